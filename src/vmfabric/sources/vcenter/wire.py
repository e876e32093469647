"""The wire of one inventory feed: ``WaitForUpdatesEx`` on an HTTP connection of the feed's
own, and two readers of its answer.

pyVmomi parses SOAP through expat callbacks that build a Python object per XML element
(about 13 us each here); a 10,000-VM read is several hundred thousand elements, most of a
cold start. VM feeds carry only simple values (strings, references, short arrays), so
``parse_fast`` reads them with regular expressions into plain Python values: a reference
becomes its moref id (``"host-42"``), an array a tuple, a guest NIC a ``GuestNic``.
``parse_tree`` reads the same with ElementTree's C parser, and a host's network
configuration too (the few fields the mapping uses, as named tuples named like pyVmomi's
objects): a 250-host answer in tens of milliseconds where pyVmomi takes a second. Feeds
with VLAN specs (distributed port groups) and field definitions go through pyVmomi's own
deserializer (``parse_pyvmomi``) on the same bytes, and keep pyVmomi objects as values.

The request is pyVmomi's own (``SerializeRequest``), sent with the session's cookie; a SOAP
fault is deserialized by pyVmomi and raised as the ``vmodl.MethodFault`` it is. Each feed
holds its connection for its lifetime, so long polls never compete for the session's pool.
"""

from __future__ import annotations

import contextlib
import html
import http.client
import re
import socket
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

from pyVmomi import SoapAdapter
from pyVmomi import vmodl as _vmodl

vmodl: Any = _vmodl
_Deserializer: Any = SoapAdapter.SoapResponseDeserializer

XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"
SOAP_BODY = "{http://schemas.xmlsoap.org/soap/envelope/}Body"


@dataclass(frozen=True, slots=True)
class GuestNic:
    """One entry of a VM's ``guest.net``: the NIC's MAC and the addresses the guest reports."""

    mac: str
    ips: tuple[str, ...] = ()


# A host's network configuration as the tree reader gives it: the attributes the mapping
# reads, named as pyVmomi names them (so pyVmomi's own objects work the same way).


class PhysicalNic(NamedTuple):
    key: str
    device: str


class VirtualSwitch(NamedTuple):
    name: str
    pnic: tuple[str, ...]


class PortGroupSpec(NamedTuple):
    name: str
    vlanId: int  # noqa: N815 - pyVmomi's name
    vswitchName: str  # noqa: N815 - pyVmomi's name


class HostPortGroup(NamedTuple):
    spec: PortGroupSpec


class ProxySwitch(NamedTuple):
    dvsUuid: str  # noqa: N815 - pyVmomi's name
    pnic: tuple[str, ...]


class Change(NamedTuple):
    """One property change: ``op`` is assign, add, remove, indirectRemove."""

    name: str
    op: str
    val: Any


class ObjectUpdate(NamedTuple):
    """One object's part of an update: ``kind`` is enter, modify or leave."""

    kind: str
    type: str  # the managed object type, e.g. "VirtualMachine"
    moref: str
    changes: tuple[Change, ...] = ()


@dataclass(frozen=True, slots=True)
class Updates:
    """One ``WaitForUpdatesEx`` answer, flattened over its filters."""

    version: str
    truncated: bool
    objects: tuple[ObjectUpdate, ...]


# ---- the fast reader ----------------------------------------------------------------------
#
# vSphere servers write these answers without whitespace and with every element in the same
# order; one regular expression walks object headers and property changes in document order
# (C speed, no object per element). ``parse_fast`` checks that it saw every ``<objectSet>``
# and ``<changeSet>`` of the answer and otherwise reads it again with ElementTree
# (``parse_tree``): a server that writes differently is slower, never misread.
#
# vcsim declares the XML Schema instance namespace again on every ``<val>`` (a third of the
# bytes of a VM answer); ``parse_fast`` first writes that opening as vCenter does
# (``<val xsi:type="``), one C pass that halves the regular expression's work. Only markup
# can start with ``<val `` (a ``<`` in text is always escaped), so no value is touched.

_TOKENS = re.compile(
    r'<objectSet><kind>([^<]*)</kind><obj type="([^"]*)">([^<]*)</obj>'
    r"|<changeSet><name>([^<]*)</name><op>([^<]*)</op>"
    r'(?:<val[^>]*?:type="(?:xsd:)?([^"]*)"[^>]*+(?:(?<=/)>|>((?:[^<]++|<(?!/val>))*+)</val>))?'
    r"</changeSet>"
)
_VCSIM_VAL = (
    '<val xmlns:XMLSchema-instance="http://www.w3.org/2001/XMLSchema-instance" '
    'XMLSchema-instance:type="'
)
_VAL = '<val xsi:type="'
_VERSION = re.compile(r"<returnval><version>([^<]*)</version>")
_ITEM_TEXT = re.compile(r"<[A-Za-z][^>]*>([^<]*)</")
_CUSTOM = re.compile(r"<key>(-?\d+)</key>(?:<value>([^<]*)</value>)?")
_NIC = re.compile(r"<GuestNicInfo>(.*?)</GuestNicInfo>", re.S)
_NESTED = re.compile(r"<(dnsConfig|ipConfig|netBIOSConfig)\b.*?</\1>", re.S)
_NIC_FIELD = re.compile(r"<(macAddress|ipAddress)>([^<]*)</")


def _text(raw: str) -> str:
    return html.unescape(raw) if "&" in raw else raw


def _raw_texts(inner: str) -> tuple[str, ...]:
    return tuple(_text(t) for t in _ITEM_TEXT.findall(inner))


def _raw_custom(inner: str) -> tuple[tuple[int, str], ...]:
    return tuple((int(k), _text(v)) for k, v in _CUSTOM.findall(inner))


def _raw_nics(inner: str) -> tuple[GuestNic, ...]:
    out = []
    for text in _NIC.findall(inner):
        # DNS servers and the IP configuration are not the NIC's own address list
        own = _NESTED.sub("", text) if "Config>" in text else text
        mac, ips = "", []
        for field_name, value in _NIC_FIELD.findall(own):
            if field_name == "macAddress":
                mac = _text(value)
            else:
                ips.append(_text(value))
        out.append(GuestNic(mac, tuple(ips)))
    return tuple(out)


_RAW_ARRAYS: dict[str, Callable[[str], Any]] = {
    "ArrayOfManagedObjectReference": _raw_texts,
    "ArrayOfString": _raw_texts,
    "ArrayOfCustomFieldValue": _raw_custom,
    "ArrayOfGuestNicInfo": _raw_nics,
}


def _raw_value(kind: str, inner: str) -> Any:
    if kind.startswith("ArrayOf"):
        reader = _RAW_ARRAYS.get(kind)
        return reader(inner) if reader is not None else None
    if "<" in inner:
        return None  # a structure this reader does not know
    return html.unescape(inner) if "&" in inner else inner


# A regular expression holds the GIL for its whole call: on a 7 MB answer, 50-100 ms in
# which no other thread of the process (the hint queries, the other feeds' sockets, the
# runtime) runs. ``_tokens`` reads the answer in pieces of about this many characters, cut
# before an ``<objectSet>`` (no token spans one), so that the interpreter can switch
# threads between pieces.
PIECE = 1 << 18


def _tokens(text: str) -> tuple[list[tuple[str, ...]], int]:
    """Every token of ``_TOKENS`` in ``text``, and how many ``<objectSet>`` and
    ``<changeSet>`` elements the text has (``parse_fast`` compares the two)."""
    tokens: list[tuple[str, ...]] = []
    elements = 0
    start, size = 0, len(text)
    while start < size:
        end = text.find("<objectSet>", start + PIECE)
        end = size if end < 0 else end
        piece = text[start:end]
        if _VCSIM_VAL in piece:
            piece = piece.replace(_VCSIM_VAL, _VAL)
        tokens += _TOKENS.findall(piece)
        elements += piece.count("<objectSet>") + piece.count("<changeSet>")
        start = end
    return tokens, elements


def _structure(kind: str, inner: str, read: dict[tuple[str, str], Any]) -> Any:
    """An array or structure value. Such values repeat from object to object (VMs on the
    same port groups, with the same attributes): each distinct one is read once per answer
    (``read``), and shared. Not guest NICs: their MACs differ per VM on a vCenter (vcsim
    gives every VM the same one, and would make this look faster than it is)."""
    if kind == "ArrayOfGuestNicInfo":
        return _raw_nics(inner)
    key = (kind, inner)
    val = read.get(key, read)
    if val is read:
        val = read[key] = _raw_value(kind, inner)
    return val


def parse_fast(body: bytes) -> Updates | None:
    """A ``WaitForUpdatesExResponse`` with simple values (see ``fast_value``); None when
    the server had nothing to report."""
    text = body.decode("utf-8")
    version = _VERSION.search(text)
    if version is None:
        return parse_tree(body)
    tokens, elements = _tokens(text)
    objects: list[ObjectUpdate] = []
    head: tuple[str, str, str] | None = None
    changes: list[Change] = []
    read: dict[tuple[str, str], Any] = {}
    for kind, obj_type, moref, name, op, val_type, inner in tokens:
        if kind:
            if head is not None:
                objects.append(ObjectUpdate(*head, tuple(changes)))
            head, changes = (kind, obj_type, _text(moref)), []
        elif not val_type:
            changes.append(Change(name, op, None))
        elif "<" in inner or val_type.startswith("ArrayOf"):
            changes.append(Change(name, op, _structure(val_type, inner, read)))
        else:
            changes.append(Change(name, op, html.unescape(inner) if "&" in inner else inner))
    if head is not None:
        objects.append(ObjectUpdate(*head, tuple(changes)))
    if len(tokens) != elements:
        return parse_tree(body)
    truncated = "<truncated>true</truncated>" in text
    return Updates(_text(version.group(1)), truncated, tuple(objects))


# ---- the tree reader (the fallback) ----------------------------------------------------------


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _texts(el: ET.Element) -> tuple[str, ...]:
    return tuple(child.text or "" for child in el)


def _custom_values(el: ET.Element) -> tuple[tuple[int, str], ...]:
    """``ArrayOfCustomFieldValue``: (field key, value) of each string value."""
    out = []
    for item in el:
        fields = {_local(c.tag): c.text or "" for c in item}
        if "key" in fields and fields["key"].lstrip("-").isdigit():
            out.append((int(fields["key"]), fields.get("value", "")))
    return tuple(out)


def _guest_nics(el: ET.Element) -> tuple[GuestNic, ...]:
    """``ArrayOfGuestNicInfo``: each NIC's MAC and its own ``ipAddress`` list."""
    out = []
    for nic in el:
        mac, ips = "", []
        for child in nic:
            name = _local(child.tag)
            if name == "macAddress":
                mac = child.text or ""
            elif name == "ipAddress":
                ips.append(child.text or "")
        out.append(GuestNic(mac, tuple(ips)))
    return tuple(out)


def _fields(el: ET.Element) -> dict[str, list[ET.Element]]:
    out: dict[str, list[ET.Element]] = {}
    for child in el:
        out.setdefault(_local(child.tag), []).append(child)
    return out


def _text_of(fields: dict[str, list[ET.Element]], name: str) -> str:
    found = fields.get(name)
    return (found[0].text or "") if found else ""


def _pnics(el: ET.Element) -> tuple[PhysicalNic, ...]:
    """``ArrayOfPhysicalNic``: each NIC's key and device."""
    return tuple(PhysicalNic(_text_of(f, "key"), _text_of(f, "device")) for f in map(_fields, el))


def _vswitches(el: ET.Element) -> tuple[VirtualSwitch, ...]:
    """``ArrayOfHostVirtualSwitch``: each vSwitch's name and its pnics' keys."""
    return tuple(
        VirtualSwitch(_text_of(f, "name"), tuple(p.text or "" for p in f.get("pnic", ())))
        for f in map(_fields, el)
    )


def _portgroups(el: ET.Element) -> tuple[HostPortGroup, ...]:
    """``ArrayOfHostPortGroup``: each port group's spec (name, VLAN, vSwitch)."""
    out = []
    for fields in map(_fields, el):
        spec = _fields(fields["spec"][0]) if "spec" in fields else {}
        vlan = _text_of(spec, "vlanId")
        out.append(HostPortGroup(PortGroupSpec(
            _text_of(spec, "name"), int(vlan) if vlan.lstrip("-").isdigit() else 0,
            _text_of(spec, "vswitchName"))))  # fmt: skip
    return tuple(out)


def _proxies(el: ET.Element) -> tuple[ProxySwitch, ...]:
    """``ArrayOfHostProxySwitch``: each proxy switch's DVS uuid and its pnics' keys."""
    return tuple(
        ProxySwitch(_text_of(f, "dvsUuid"), tuple(p.text or "" for p in f.get("pnic", ())))
        for f in map(_fields, el)
    )


_ARRAYS: dict[str, Callable[[ET.Element], Any]] = {
    "ArrayOfManagedObjectReference": _texts,
    "ArrayOfString": _texts,
    "ArrayOfCustomFieldValue": _custom_values,
    "ArrayOfGuestNicInfo": _guest_nics,
    "ArrayOfPhysicalNic": _pnics,
    "ArrayOfHostVirtualSwitch": _vswitches,
    "ArrayOfHostPortGroup": _portgroups,
    "ArrayOfHostProxySwitch": _proxies,
}


def fast_value(val: ET.Element | None) -> Any:
    """A property value as a plain Python value: text for strings, enums, numbers and
    references (their moref id); a tuple for the arrays in ``_ARRAYS``; None for nothing
    or for a structure this reader does not know (the mapping then ignores it)."""
    if val is None:
        return None
    kind = val.get(XSI_TYPE, "")
    reader = _ARRAYS.get(kind.rpartition(":")[2])
    if reader is not None:
        return reader(val)
    if len(val):
        return None
    return val.text or ""


def _object_update(el: ET.Element) -> ObjectUpdate:
    kind = obj_type = moref = ""
    changes = []
    for child in el:
        name = _local(child.tag)
        if name == "changeSet":
            parts = list(child)
            val = parts[2] if len(parts) > 2 else None
            changes.append(Change(parts[0].text or "", parts[1].text or "", fast_value(val)))
        elif name == "obj":
            obj_type, moref = child.get("type", ""), child.text or ""
        elif name == "kind":
            kind = child.text or ""
    return ObjectUpdate(kind, obj_type, moref, tuple(changes))


def parse_tree(body: bytes) -> Updates | None:
    """``parse_fast``'s result through ElementTree (any well-formed answer)."""
    envelope = ET.fromstring(body)  # noqa: S314 - the vCenter this session logged in to
    body_el = envelope.find(SOAP_BODY)
    response = body_el[0] if body_el is not None and len(body_el) else None
    returnval = response[0] if response is not None and len(response) else None
    if returnval is None:
        return None
    version, truncated = "", False
    objects: list[ObjectUpdate] = []
    for child in returnval:
        name = _local(child.tag)
        if name == "filterSet":
            objects.extend(_object_update(o) for o in child if _local(o.tag) == "objectSet")
        elif name == "version":
            version = child.text or ""
        elif name == "truncated":
            truncated = child.text == "true"
    return Updates(version, truncated, tuple(objects))


# ---- pyVmomi's reader ---------------------------------------------------------------------


def from_update_set(update_set: Any) -> Updates | None:
    """pyVmomi's ``UpdateSet`` in the same shape (values stay pyVmomi objects)."""
    if update_set is None:
        return None
    objects = tuple(
        ObjectUpdate(
            str(update.kind),
            str(update.obj._wsdlName),
            str(update.obj._moId),
            tuple(Change(str(c.name), str(c.op), c.val) for c in update.changeSet or ()),
        )
        for filter_update in update_set.filterSet or ()
        for update in filter_update.objectSet or ()
    )
    return Updates(str(update_set.version), bool(update_set.truncated), objects)


# ---- the call ------------------------------------------------------------------------------


def soap_headers(stub: Any) -> dict[str, str]:
    """The headers pyVmomi's stub sends: the session's cookie, the API version."""
    headers = {
        "Cookie": stub.cookie,
        "SOAPAction": stub.versionId,
        "Content-Type": "text/xml; charset=UTF-8",
    }
    headers.update(getattr(stub, "_customHeaders", None) or {})
    return headers


def raise_fault(stub: Any, info: Any, body: bytes) -> None:
    """Raise the ``vmodl.MethodFault`` of a SOAP fault answer (HTTP 500), as pyVmomi would."""
    fault = _Deserializer(stub).Deserialize(body, info.result)
    if isinstance(fault, BaseException):
        raise fault
    raise http.client.HTTPException("SOAP fault without a fault object")


class WaitCall:
    """``WaitForUpdatesEx`` of one PropertyCollector over a dedicated connection.

    ``reader`` picks how the answer is read: "fast" (``parse_fast``), "tree"
    (``parse_tree``, for structures ``_ARRAYS`` knows) or "pyvmomi". ``close`` may be called from
    another thread: it shuts the socket, so a call blocked in a long poll returns at once
    with an ``OSError``."""

    def __init__(
        self, stub: Any, collector: Any, reader: str, timeout: float | None = None
    ) -> None:
        self.stub = stub
        self.collector = collector
        self.reader = reader
        self.timeout = timeout  # seconds an answer may take; None: the connection's own
        self.info = vmodl.query.PropertyCollector._GetMethodInfo("WaitForUpdatesEx")
        self._conn: http.client.HTTPConnection | None = None
        self._closed = False

    def __call__(self, version: str, wait_seconds: int, max_objects: int) -> Updates | None:
        body = self.fetch(version, wait_seconds, max_objects)
        if self.reader == "fast":
            return parse_fast(body)
        if self.reader == "tree":
            return parse_tree(body)
        return self.parse_pyvmomi(body)

    def fetch(self, version: str, wait_seconds: int, max_objects: int) -> bytes:
        """The answer's bytes; a SOAP fault is raised as its ``vmodl.MethodFault``."""
        options = vmodl.query.PropertyCollector.WaitOptions(
            maxWaitSeconds=wait_seconds, maxObjectUpdates=max_objects
        )
        request = self.stub.SerializeRequest(self.collector, self.info, [version, options])
        status, body = self._post(request)
        if status == 500:
            raise_fault(self.stub, self.info, body)
        if status != 200:
            raise http.client.HTTPException(f"WaitForUpdatesEx answered HTTP {status}")
        return body

    def parse_pyvmomi(self, body: bytes) -> Updates | None:
        """The answer through pyVmomi's deserializer (values stay pyVmomi objects)."""
        return from_update_set(_Deserializer(self.stub).Deserialize(body, self.info.result))

    def _post(self, request: str | bytes) -> tuple[int, bytes]:
        if self._closed:
            raise OSError("the feed is closed")
        if self._conn is None:
            self._conn = self.stub.GetConnection()
            if self.timeout is not None:
                self._conn.timeout = self.timeout
                if self._conn.sock is not None:
                    self._conn.sock.settimeout(self.timeout)
        conn = self._conn
        try:
            conn.request("POST", self.stub.path, request, soap_headers(self.stub))
            resp = conn.getresponse()
            return resp.status, resp.read()
        except BaseException:
            self._drop()
            raise

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def close(self) -> None:
        self._closed = True
        conn = self._conn
        sock = getattr(conn, "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed by the peer
                sock.shutdown(socket.SHUT_RDWR)


def wait_all(call: Callable[[str, int, int], Updates | None], version: str, wait: int,
             max_objects: int) -> Iterator[Updates]:  # fmt: skip
    """Answers until the server has nothing more (follows ``truncated``)."""
    while True:
        updates = call(version, wait, max_objects)
        if updates is None:
            return
        version = updates.version
        yield updates
        if not updates.truncated:
            return
