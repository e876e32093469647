"""Where hypervisor uplinks land: CDP/LLDP hints, lldpd, static links."""
