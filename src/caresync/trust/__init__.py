"""The trust layer: device and station keys, signing, sealing, the role table (scopes), enrolment codes."""
