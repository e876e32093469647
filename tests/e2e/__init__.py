"""End-to-end tests on the namespace lab with real frames (marker ``e2e``)."""
