"""Address-set targets: firewalls and vSwitches holding security-group members."""
