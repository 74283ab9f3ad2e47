"""The sync layer: the one HTTP client, the wire format, network sync, enrolment, relay bundles."""
