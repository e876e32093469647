# vmfabric: `make test` and `make demo` install what they need on a fresh Debian machine
# (apt packages, a venv in .venv, the vcsim simulator) and then run.

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
BUILD := build
APT_PACKAGES := openvswitch-switch golang-go golang-github-vmware-govmomi-dev lldpd \
	libvirt-dev pkg-config graphviz iproute2 iputils-ping frr procps postgresql libvirt-daemon \
	nftables openssl ethtool chromium chromium-driver
PYTEST_ARGS ?=

.PHONY: all deps apt venv vcsim lint test unit demo bench soak clean

all: test

deps: apt venv vcsim

# Install the Debian packages the tests and the demo run (only those missing).
apt:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null \
		| grep -q "install ok installed" || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing: $$missing"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

venv: $(VENV)/.installed

# fake-switches (the vendor switch peers of the tests) pins Twisted<17, which does not build
# on Python 3.11: its dependencies come from the fakeswitches extra, itself with --no-deps.
$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,libvirt,fakeswitches]'
	$(PY) -m pip install -q --no-deps 'fake-switches>=1.5'
	@touch $@

vcsim: venv
	$(PY) -m vmfabric.lab.vcsim build

lint: venv
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

test: deps lint
	scripts/run-pytest $(PYTEST_ARGS)

unit: venv
	scripts/run-pytest tests/unit $(PYTEST_ARGS)

demo: deps
	$(VENV)/bin/vmfabric demo

bench: deps
	$(PY) -m bench

soak: deps
	$(PY) -m bench.soak

clean:
	rm -rf $(BUILD) .mypy_cache .ruff_cache .pytest_cache .hypothesis
