"""Switch drivers: read edge-port VLANs and apply one switch's plan."""
