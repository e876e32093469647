"""Peers for vendor drivers: switches written by others, run as subprocesses."""
