"""Relay bundles: the file format (shared with the server), the courier's bag, and the device's side."""
