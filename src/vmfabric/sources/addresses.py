"""Addresses, MACs, tags and attributes in the one form every source gives ``Vm``.

- IP addresses: ``ipaddress``'s normal text (``2001:db8::1``, not ``2001:DB8:0::1``), without
  duplicates, sorted IPv4 first then by value (``10.0.0.9`` before ``10.0.0.10``). Managers
  also report link-local addresses (``fe80::/10``, ``169.254.0.0/16``) and loopback; they
  say nothing about where a VM can be reached, so ``guest_ips`` leaves them out.
- MACs: lower case, colon separated (``00:50:56:ab:cd:ef``), sorted.
- Tags: sorted, without duplicates. Attributes: (key, value) pairs sorted by key.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_MAC = re.compile(r"^[0-9a-f]{2}([:-])[0-9a-f]{2}(\1[0-9a-f]{2}){4}$")


def parse_ip(text: str) -> IpAddress:
    """One address; ValueError names it when it is not an IPv4 or IPv6 address."""
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not an IPv4 or IPv6 address") from None


def _key(address: IpAddress) -> tuple[int, int]:
    return (address.version, int(address))


def normalize_ips(addresses: Iterable[IpAddress]) -> tuple[str, ...]:
    """Sorted unique normal text of ``addresses``."""
    return tuple(str(a) for a in sorted(set(addresses), key=_key))


def guest_ips(texts: Iterable[str]) -> tuple[str, ...]:
    """The reachable addresses among what a guest or hypervisor reports: invalid text,
    link-local, loopback and unspecified addresses are dropped (see the module docstring)."""
    found = []
    for text in texts:
        try:
            address = ipaddress.ip_address(text.split("%", 1)[0].strip())
        except ValueError:
            continue
        if not (address.is_link_local or address.is_loopback or address.is_unspecified):
            found.append(address)
    return normalize_ips(found)


def parse_mac(text: str) -> str:
    """``aa:bb:cc:dd:ee:ff`` from any case, ``:`` or ``-`` separated; ValueError otherwise."""
    mac = text.strip().lower()
    if not _MAC.match(mac):
        raise ValueError(f"{text!r} is not a MAC address (aa:bb:cc:dd:ee:ff)")
    return mac.replace("-", ":")


def normalize_macs(texts: Iterable[str]) -> tuple[str, ...]:
    """Sorted unique MACs; text that is not a MAC is dropped (for what managers report)."""
    out = set()
    for text in texts:
        try:
            out.add(parse_mac(text))
        except ValueError:
            continue
    return tuple(sorted(out))


def normalize_tags(tags: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(set(tags)))


def normalize_attributes(attributes: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(attributes.items()))
