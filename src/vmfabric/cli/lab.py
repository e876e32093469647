"""``vmfabric lab up|down|show``: thin handlers over ``vmfabric.lab.builder`` and ``graph``.

``TOPOLOGY`` is a topology file or a built-in name (default ``leaf-spine``); ``down`` and
``show`` also take a lab name. State lives in ``--state-dir`` (default
``$VMFABRIC_LAB_STATE`` or ``/run/vmfabric-lab``). Errors are one line on stderr; exit 2
for bad input, 1 for runtime failures.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from vmfabric.cli.common import guarded
from vmfabric.lab import builder, graph

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

TopologyArg = Annotated[
    str | None, typer.Argument(help="Topology file or built-in name (default leaf-spine).")
]
StateOpt = Annotated[
    Path | None, typer.Option("--state-dir", help="Root of lab state directories.")
]


@app.command()
def up(
    topology: TopologyArg = None,
    *,
    name: Annotated[str | None, typer.Option(help="Lab name (default: the file's).")] = None,
    underlay: Annotated[str | None, typer.Option(help="none, ospf or bgp.")] = None,
    state_dir: StateOpt = None,
    reuse: Annotated[bool, typer.Option(help="Return a running lab as it is.")] = False,
    wait: Annotated[float, typer.Option(help="Seconds to wait for LLDP/underlay.")] = 45.0,
) -> None:
    """Build the lab in network namespaces."""
    state = guarded(
        lambda: builder.up(
            topology, name=name, underlay=underlay, root=state_dir, reuse=reuse, wait=wait
        )
    )
    typer.echo(
        f"lab {state.name} up in {state.up_seconds}s: {len(state.nodes)} nodes, "
        f"{len(state.links)} links, underlay {state.underlay}"
    )
    typer.echo(f"state: {Path(state.state_dir) / 'state.json'}")


@app.command()
def down(topology: TopologyArg = None, state_dir: StateOpt = None) -> None:
    """Remove the lab (idempotent; also clears what a crashed run left)."""
    removed = guarded(lambda: builder.down(builder.lab_name(topology), state_dir))
    typer.echo(f"removed {len(removed)} items" if removed else "nothing to remove")


@app.command()
def show(
    topology: TopologyArg = None,
    state_dir: StateOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    picture: Annotated[bool, typer.Option(help="Write topology.svg/.png.")] = True,
) -> None:
    """Nodes, links, ports and LLDP neighbours; writes a picture of the lab."""
    state = guarded(lambda: builder.load_state(builder.lab_name(topology), state_dir))
    data = guarded(lambda: builder.describe(state))
    if picture:
        data["picture"] = [str(path) for path in guarded(lambda: graph.picture(state))]
    if as_json:
        typer.echo(json.dumps(data, indent=2, default=str))
        return
    _render(data)


def _render(data: dict[str, object]) -> None:
    typer.echo(
        f"lab {data['name']} ({data['status']}, underlay {data['underlay']}), "
        f"state {data['state_dir']}"
    )
    nodes = data["nodes"]
    assert isinstance(nodes, list)
    for node in nodes:
        _render_node(node)
    typer.echo("links:")
    for link in data["links"]:  # type: ignore[attr-defined]
        typer.echo(f"  {link['name']:<8} {link['a']} -- {link['b']}")
    for vm in data["vms"]:  # type: ignore[attr-defined]
        typer.echo(f"vm {vm['name']}: {vm['host']} vlan {vm['vlan']} {vm['ip']} {vm['mac']}")
    for path in data.get("picture", []):  # type: ignore[attr-defined]
        typer.echo(f"picture: {path}")


def _render_node(node: dict[str, object]) -> None:
    extra = " ".join(
        f"{key} {node[key]}"
        for key in ("mgmt_ip", "loopback", "asn", "vtep_address")
        if node.get(key)
    )
    typer.echo(
        f"{node['name']} [{node['kind']}] netns {node['netns']} bridge {node['bridge']} "
        f"ovsdb {node['ovsdb']} {extra}".rstrip()
    )
    for port in node["ports"]:  # type: ignore[attr-defined]
        role = (
            "edge"
            if port["edge"]
            else ("routed " + port["address"] if port["address"] else "trunk")
        )
        typer.echo(
            f"  {port['name']:<8} {port['mac']} -> {port['peer']:<14} {role:<20} "
            f"lldp: {port['lldp'] or '-'}"
        )
