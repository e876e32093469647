"""Inventory sources: vCenter, libvirt, static files."""
