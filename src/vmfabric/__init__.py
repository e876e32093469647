"""vmfabric: keeps switch edge ports in step with where virtual machines run."""

__version__ = "0.1.0"
