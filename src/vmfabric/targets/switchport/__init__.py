"""Switch-port targets: edge-port VLAN membership, one driver per switch family."""
