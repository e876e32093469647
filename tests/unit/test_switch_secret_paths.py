"""A switch's relative file: secret is read from beside the config file, not from wherever
vmfabric was started."""

from __future__ import annotations

from pathlib import Path

from vmfabric.config import parse_config


def test_relative_file_secret_of_a_switch_is_anchored_at_the_config_folder(
    tmp_path: Path,
) -> None:
    data = {
        "switches": [
            {"name": "leaf1", "driver": "eos", "host": "127.0.0.1", "username": "admin",
             "password": "file:secrets/leaf1", "edge_ports": ["Ethernet1"]},
            {"name": "leaf2", "driver": "eos", "host": "127.0.0.2", "username": "admin",
             "password": "file:/etc/vmfabric/leaf2", "edge_ports": ["Ethernet1"]},
        ]
    }  # fmt: skip
    config = parse_config(data, "vmfabric.yaml", tmp_path)
    first, second = (sw.model_dump()["password"] for sw in config.switches)
    assert first == f"file:{tmp_path / 'secrets/leaf1'}"
    assert second == "file:/etc/vmfabric/leaf2"
