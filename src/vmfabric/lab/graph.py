"""A picture of a lab: graphviz ``dot`` source built from a topology, rendered to SVG and PNG.

Switches are boxes (with loopback and management address when known), hosts are
ellipses, VMs (from the lab state) are small notes next to their host. Every link is one
edge labelled with its name; the port names sit at each end (``taillabel`` and
``headlabel``), so the picture reads like a cabling plan. ``render`` runs the ``dot``
program; ``dot_source`` is pure and is what tests parse.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from vmfabric.core.errors import PermanentError
from vmfabric.lab import topology as tp
from vmfabric.lab.builder import LabState


def _quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _tier(topo: tp.Topology, name: str) -> int:
    """Drawing row: 0 switches without hosts (spines), 1 switches with hosts, 2 hosts."""
    if tp.node(topo, name).kind == tp.Kind.HOST:
        return 2
    return 1 if tp.edge_ports(topo, name) else 0


def _node_line(topo: tp.Topology, item: tp.Node) -> str:
    label = item.name
    if item.kind == tp.Kind.SWITCH:
        label += f"\nlo {tp.loopback(topo, item.name)}"
        label += f"\nmgmt {tp.mgmt_address(topo, item.name).ip}"
        if item.name in tp.vtep_leaves(topo):
            label += f"\nvtep {tp.vtep_address(topo, item.name)}"
        style = "shape=box, style=filled, fillcolor=lightblue"
        return f"  {_quote(item.name)} [{style}, label={_quote(label)}];"
    return f"  {_quote(item.name)} [shape=ellipse, label={_quote(label)}];"


def _link_line(topo: tp.Topology, index: int) -> str:
    a, b = sorted(tp.endpoints(topo.links[index]), key=lambda end: _tier(topo, end.node))
    name = tp.link_name(topo, index)
    return (
        f"  {_quote(a.node)} -- {_quote(b.node)} [label={_quote(name)}, "
        f"taillabel={_quote(a.port)}, headlabel={_quote(b.port)}, fontsize=10];"
    )


def _vm_lines(state: LabState | None) -> list[str]:
    if state is None:
        return []
    lines: list[str] = []
    for vm in state.vms.values():
        node_id = f"vm:{vm.name}"
        label = f"{vm.name}\nvlan {vm.vlan}\n{vm.ip}"
        lines.append(f"  {_quote(node_id)} [shape=note, fontsize=9, label={_quote(label)}];")
        lines.append(f"  {_quote(vm.host)} -- {_quote(node_id)} [style=dashed];")
    return lines


def dot_source(topo: tp.Topology, state: LabState | None = None) -> str:
    """Graphviz source of ``topo`` (and the VMs in ``state``)."""
    lines = [
        f"graph {_quote(topo.name)} {{",
        "  rankdir=TB; nodesep=0.6; ranksep=1.2;",
        f"  label={_quote(f'lab {topo.name} (underlay {topo.underlay})')};",
    ]
    lines += [_node_line(topo, item) for item in topo.nodes]
    for tier in range(3):
        members = " ".join(_quote(n.name) for n in topo.nodes if _tier(topo, n.name) == tier)
        lines.append(f"  {{rank=same; {members}}}" if members else "")
    lines += [_link_line(topo, index) for index in range(len(topo.links))]
    lines += _vm_lines(state)
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(source: str, directory: Path, stem: str = "topology") -> list[Path]:
    """Write ``<stem>.dot``, ``.svg`` and ``.png`` into ``directory``; return their paths."""
    if shutil.which("dot") is None:
        raise PermanentError("graphviz 'dot' is not installed")
    directory.mkdir(parents=True, exist_ok=True)
    dot_file = directory / f"{stem}.dot"
    dot_file.write_text(source)
    written = [dot_file]
    for fmt in ("svg", "png"):
        out = directory / f"{stem}.{fmt}"
        done = subprocess.run(
            ["dot", f"-T{fmt}", "-o", str(out), str(dot_file)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if done.returncode != 0:
            first = (done.stderr.strip() or "failed").splitlines()[0]
            raise PermanentError(f"dot -T{fmt}: {first}")
        written.append(out)
    return written


def picture(state: LabState) -> list[Path]:
    """Render lab ``state`` into its state directory; return the files written."""
    return render(dot_source(state.topology, state), Path(state.state_dir))
