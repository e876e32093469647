"""The runtime: the only place with tasks, clocks, threads and retries."""
