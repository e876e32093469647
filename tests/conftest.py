"""Shared pytest setup: fixtures that start real components live in tests/support/."""

pytest_plugins = ["support.ovs_fixtures", "support.vcsim_fixtures", "support.api_fixtures"]
