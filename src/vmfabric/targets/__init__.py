"""Targets: what vmfabric writes. Each kind (switch ports, address sets, VTEPs) has a
sub-package with its contract and its drivers."""
