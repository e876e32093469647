"""vmfabric benchmarks: ``python -m bench`` (``make bench``) writes BENCHMARKS.md,
bench/results/latest.json and bench/figures.json.

Modules: ``stats`` (percentiles, machine description), ``engine`` (engine throughput,
recompute, memory; the 100,000-VM engine-only cold start), ``ovsmon`` (an OVSDB monitor
with server-side timestamps), ``vclab`` (vcsim + a real Open vSwitch + the controller
in-process), ``fabric`` (convergence, cold start, storm and the periodic-sync baseline on
that lab), ``listener`` (the bare WaitForUpdatesEx floor, run as a subprocess) and
``report`` (BENCHMARKS.md).
"""
