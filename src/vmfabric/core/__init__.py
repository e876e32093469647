"""The domain core: model types, VLAN ranges and the error hierarchy. Imports nothing else
of vmfabric."""
