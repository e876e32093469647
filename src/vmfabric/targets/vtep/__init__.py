"""VTEP drivers: program VXLAN flood lists (head-end replication) on tunnel endpoints."""
