"""The shared inventory every intent reads, and the topology that resolves uplinks."""
