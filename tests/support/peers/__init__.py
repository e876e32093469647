"""Peers that stand in for vendor switches in tests: fake-switches (Internap's simulator,
extended where it lacks a feature, and the extension says so) and small peers written
here from the vendors' published API shapes (NX-API). Each runs as its own process on
127.0.0.1 and is stopped by PID."""
