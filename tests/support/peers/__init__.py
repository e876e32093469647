"""Peers that stand in for vendor devices in tests, each its own process on 127.0.0.1
stopped by PID: fake-switches (Internap's simulator, extended where it lacks a feature,
and the extension says so) and small peers written here from the vendors' published API
shapes (NX-API, NVUE, the PAN-OS XML API)."""
