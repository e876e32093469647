"""``QueryNetworkHint`` on the wire: a host's CDP/LLDP hints without pyVmomi's reader.

pyVmomi builds a Python object per XML element of the answer, through expat callbacks;
at a cold start, 250 hosts' answers are read while the VM answers are parsed on other
threads, and every element waits for the interpreter lock. The request here is pyVmomi's
own (``SerializeRequest``, on a connection of the session's pool); the answer is read with
ElementTree's C parser into named tuples named like pyVmomi's objects (only the fields
``mapping.neighbor_from_hint`` reads), so the mapping takes either. A SOAP fault is raised
as the ``vmodl.MethodFault`` it is, as pyVmomi would.
"""

from __future__ import annotations

import http.client
import xml.etree.ElementTree as ET
from typing import Any, NamedTuple

from pyVmomi import vim as _vim

from vmfabric.sources.vcenter.wire import SOAP_BODY, raise_fault, soap_headers

vim: Any = _vim
_NS = "{urn:vim25}"


class KeyValue(NamedTuple):
    key: str
    value: str


class CdpHint(NamedTuple):
    """The fields of pyVmomi's ``PhysicalNic.CdpInfo`` that the mapping reads."""

    devId: str  # noqa: N815 - pyVmomi's name
    portId: str  # noqa: N815 - pyVmomi's name
    address: str
    mgmtAddr: str  # noqa: N815 - pyVmomi's name


class LldpHint(NamedTuple):
    """The fields of pyVmomi's ``LinkLayerDiscoveryProtocolInfo`` that the mapping reads."""

    chassisId: str  # noqa: N815 - pyVmomi's name
    portId: str  # noqa: N815 - pyVmomi's name
    parameter: tuple[KeyValue, ...]


class NicHint(NamedTuple):
    """One ``PhysicalNicHintInfo``: the NIC and what it heard."""

    device: str
    connectedSwitchPort: CdpHint | None  # noqa: N815 - pyVmomi's name
    lldpInfo: LldpHint | None  # noqa: N815 - pyVmomi's name


def _text(el: ET.Element, name: str) -> str:
    child = el.find(_NS + name)
    return (child.text or "") if child is not None else ""


def _cdp(el: ET.Element | None) -> CdpHint | None:
    if el is None:
        return None
    return CdpHint(_text(el, "devId"), _text(el, "portId"), _text(el, "address"),
                   _text(el, "mgmtAddr"))  # fmt: skip


def _lldp(el: ET.Element | None) -> LldpHint | None:
    if el is None:
        return None
    params = tuple(
        KeyValue(_text(p, "key"), _text(p, "value")) for p in el.iterfind(_NS + "parameter")
    )
    return LldpHint(_text(el, "chassisId"), _text(el, "portId"), params)


def parse_hints(body: bytes) -> tuple[NicHint, ...]:
    """The ``PhysicalNicHintInfo`` list of a ``QueryNetworkHint`` answer."""
    envelope = ET.fromstring(body)  # noqa: S314 - the vCenter this session logged in to
    body_el = envelope.find(SOAP_BODY)
    response = body_el[0] if body_el is not None and len(body_el) else None
    if response is None:
        return ()
    return tuple(
        NicHint(
            _text(info, "device"),
            _cdp(info.find(_NS + "connectedSwitchPort")),
            _lldp(info.find(_NS + "lldpInfo")),
        )
        for info in response.iterfind(_NS + "returnval")
    )


def query_network_hint(stub: Any, system: Any) -> tuple[NicHint, ...]:
    """Every NIC's hints of one host's ``HostNetworkSystem`` (a pyVmomi managed object)."""
    info = vim.host.NetworkSystem._GetMethodInfo("QueryNetworkHint")
    request = stub.SerializeRequest(system, info, [None])
    conn = stub.GetConnection()
    try:
        conn.request("POST", stub.path, request, soap_headers(stub))
        response = conn.getresponse()
        status, body = response.status, response.read()
    except BaseException:
        conn.close()
        raise
    stub.ReturnConnection(conn)
    if status == 500:
        raise_fault(stub, info, body)
    if status != 200:
        raise http.client.HTTPException(f"QueryNetworkHint answered HTTP {status}")
    return parse_hints(body)
