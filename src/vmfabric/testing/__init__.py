"""Test support shipped with vmfabric, for its own tests and for third-party driver plugins.

``vmfabric.testing.conformance`` is the switch-port driver conformance suite: a driver's
test module subclasses ``SwitchPortConformance`` and provides a ``harness`` fixture (a
``SwitchHarness``: the switch, or a faithful peer, reached without the driver under test).
It needs pytest, which vmfabric itself does not depend on.
"""
