"""The operator interfaces served by ``vmfabric run`` when ``api:`` is configured: the REST
API under ``/api/v1/`` (the same JSON as ``show ... --json``), live Server-Sent Events, the
web fabric view at ``/`` and Prometheus metrics at ``/metrics``. Thin: parse, call one view
or runtime function, render."""
