"""``python -m vmfabric`` runs the command line."""

from vmfabric.cli import main

main()
