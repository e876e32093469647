"""Lab tooling: network namespaces, private Open vSwitch instances, the namespace lab."""
