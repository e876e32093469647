"""The edl target serves one plain-text list per group over HTTP (loopback): token
required, ETag and Last-Modified with 304s, and the lists follow membership changes."""

from __future__ import annotations

import base64
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from vmfabric.config.groups import EdlFirewall
from vmfabric.targets.addrset.base import MemberChange
from vmfabric.targets.addrset.edl import EdlDriver

TOKEN = "edl-token-123"


class Clock:
    now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def edl() -> Iterator[tuple[EdlDriver, Clock]]:
    clock = Clock()
    cfg = EdlFirewall.model_validate(
        {"name": "edl", "kind": "edl", "listen": "127.0.0.1:0", "token": "env:X"}
    )
    d = EdlDriver(cfg, SecretStr(TOKEN), clock)
    d.connect()
    yield d, clock
    d.close()


def get(d: EdlDriver, path: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(f"http://127.0.0.1:{d.port}{path}", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310 (loopback)
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), b""


def test_lists_need_the_token_and_follow_changes(edl: tuple[EdlDriver, Clock]) -> None:
    d, clock = edl
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert get(d, "/edl/web.txt", **auth)[0] == 503, "nothing served before the first apply"
    members = [("web", "10.0.0.2"), ("web", "10.0.0.10"), ("web", "fd00::1"), ("db", "10.9.0.0/24")]
    d.apply([MemberChange(g, m, "add") for g, m in members])
    assert get(d, "/edl/web.txt")[0] == 401
    assert get(d, "/edl/web.txt", Authorization="Bearer wrong")[0] == 401
    status, headers, body = get(d, "/edl/web.txt", **auth)
    assert status == 200
    assert body == b"10.0.0.2\n10.0.0.10\nfd00::1\n"
    assert headers["Content-Type"].startswith("text/plain")
    assert headers["Last-Modified"] == "Tue, 14 Nov 2023 22:13:20 GMT"
    assert get(d, "/edl/web.txt", **auth, **{"If-None-Match": headers["ETag"]})[0] == 304
    assert (
        get(d, "/edl/web.txt", **auth, **{"If-Modified-Since": headers["Last-Modified"]})[0] == 304
    )
    assert get(d, "/edl/nosuch.txt", **auth)[0] == 404
    clock.now += 60
    d.apply([MemberChange("web", "10.0.0.2", "remove")])
    status, new_headers, body = get(d, "/edl/web.txt", **auth, **{"If-None-Match": headers["ETag"]})
    assert (status, body) == (200, b"10.0.0.10\nfd00::1\n")
    assert new_headers["ETag"] != headers["ETag"]
    assert (
        get(
            d, "/edl/db.txt", **auth, **{"If-None-Match": get(d, "/edl/db.txt", **auth)[1]["ETag"]}
        )[0]
        == 304
    ), "db unchanged"


def test_basic_auth_uses_the_username_and_the_token() -> None:
    cfg = EdlFirewall.model_validate(
        {"name": "edl", "kind": "edl", "listen": "127.0.0.1:0", "auth": "basic", "token": "env:X"}
    )
    d = EdlDriver(cfg, SecretStr(TOKEN))
    d.connect()
    try:
        d.apply([MemberChange("web", "10.0.0.1", "add")])
        good = base64.b64encode(f"vmfabric:{TOKEN}".encode()).decode()
        bad = base64.b64encode(f"admin:{TOKEN}".encode()).decode()
        assert get(d, "/edl/web.txt", Authorization=f"Basic {good}")[2] == b"10.0.0.1\n"
        status, headers, _ = get(d, "/edl/web.txt", Authorization=f"Basic {bad}")
        assert status == 401
        assert headers["WWW-Authenticate"].startswith("Basic")
    finally:
        d.close()
