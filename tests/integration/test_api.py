"""The REST API on a real uvicorn server over a real store: the bearer token, the same JSON
as `vmfabric show --json`, approve and sync, one-message JSON errors, OpenAPI, TLS, and the
start-up errors (token reference, listen address, port in use)."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from support.api_fixtures import TOKEN_ENV, Api, api_config, config_data, move_vm, populate, port
from vmfabric import __version__, views
from vmfabric.api.server import start
from vmfabric.cli import app as cli_app
from vmfabric.config import parse_config
from vmfabric.core.errors import ConfigError, TransientError
from vmfabric.runtime.bus import BusEvent, EventBus
from vmfabric.store import Store

pytestmark = pytest.mark.integration

PROTECTED = [
    ("GET", "/api/v1/vms"),
    ("GET", "/api/v1/hosts"),
    ("GET", "/api/v1/interfaces"),
    ("GET", "/api/v1/vlans"),
    ("GET", "/api/v1/sessions"),
    ("GET", "/api/v1/switches"),
    ("GET", "/api/v1/plans"),
    ("GET", "/api/v1/plans/1"),
    ("GET", "/api/v1/audit"),
    ("GET", "/api/v1/controllers"),
    ("GET", "/api/v1/groups"),
    ("GET", "/api/v1/policies"),
    ("GET", "/api/v1/events"),
    ("GET", "/api/v1/openapi.json"),
    ("POST", "/api/v1/plans/1/approve"),
    ("POST", "/api/v1/sync?dry_run=true"),
]


@pytest.mark.parametrize(("method", "path"), PROTECTED)
@pytest.mark.parametrize("token", [None, "wrong-token"], ids=["no-token", "wrong-token"])
def test_every_api_route_needs_the_bearer_token(
    api: Api, method: str, path: str, token: str | None
) -> None:
    with api.client(token) as client:
        reply = client.request(method, path)
    assert reply.status_code == 401
    assert reply.json() == {"error": "a valid bearer token is required"}
    assert reply.headers["www-authenticate"] == "Bearer"
    assert api.store.plan(api.held)["status"] == "held"  # type: ignore[index]


def test_healthz_metrics_and_the_ui_need_no_token(api: Api) -> None:
    with api.client(None) as client:
        assert client.get("/healthz").json()["status"] == "ok"
        metrics = client.get("/metrics")
        assert metrics.status_code == 200
        assert "vmfabric_store_up 1.0" in metrics.text
        page = client.get("/")
        assert page.status_code == 200
        assert "text/html" in page.headers["content-type"]


# ---- the same JSON as `vmfabric show ... --json` ------------------------------------------


def write_config(api: Api) -> Path:
    path = api.config.base_dir / "vmfabric.yaml"
    path.write_text(yaml.safe_dump(config_data(api.config.base_dir)))
    return path


def cli_json(config: Path, *args: str) -> Any:
    result = CliRunner().invoke(cli_app, ["show", *args, "--json", "-c", str(config)])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


SAME_AS_SHOW = [
    ("/api/v1/sessions", ["session"]),
    ("/api/v1/sessions?name=lab", ["session", "lab"]),
    ("/api/v1/vms", ["vm"]),
    ("/api/v1/vms?name=web-01", ["vm", "web-01"]),
    ("/api/v1/hosts", ["host"]),
    ("/api/v1/interfaces", ["interface"]),
    ("/api/v1/vlans", ["vlan"]),
    ("/api/v1/vlans?dynamic=true", ["vlan", "--dynamic"]),
    ("/api/v1/plans", ["plan"]),
    ("/api/v1/plans?status=held", ["plan", "--status", "held"]),
    ("/api/v1/audit?limit=2", ["audit", "--limit", "2"]),
    ("/api/v1/audit", ["audit"]),
    ("/api/v1/controllers", ["controller"]),
    ("/api/v1/groups", ["group"]),
    ("/api/v1/groups?name=web", ["group", "web"]),
    ("/api/v1/policies", ["policy"]),
]


@pytest.mark.parametrize(("path", "show"), SAME_AS_SHOW, ids=[p for p, _ in SAME_AS_SHOW])
def test_api_answers_exactly_what_show_json_prints(api: Api, path: str, show: list[str]) -> None:
    expected = cli_json(write_config(api), *show)
    with api.client() as client:
        reply = client.get(path)
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/json"
    assert reply.json() == expected
    if show[0] not in ("controller", "plan") or "--status" in show:
        assert expected, f"the fabric fixture gives `show {' '.join(show)}` something to show"


def test_switches_are_the_store_view(api: Api) -> None:
    with api.client() as client:
        got = client.get("/api/v1/switches").json()
    assert got == views.switches(api.store)
    assert [(s["name"], s["state"]) for s in got] == [("leaf1", "ok"), ("leaf2", "unreachable")]


def test_filters_narrow_the_views(api: Api) -> None:
    with api.client() as client:
        assert [i["switch"] for i in client.get("/api/v1/interfaces?port=p2").json()] == [
            "leaf1",
            "leaf2",
        ]
        assert {v["vlan"] for v in client.get("/api/v1/vlans?vlan=110").json()} == {110}
        assert client.get("/api/v1/vms?name=nobody").json() == []
        audit = client.get("/api/v1/audit?switch=leaf2").json()
        assert [a["switch"] for a in audit] == ["leaf2"]


# ---- approve and sync ----------------------------------------------------------------------


def test_approve_marks_the_held_plan_approved_and_publishes_it(api: Api) -> None:
    seen: list[BusEvent] = []
    api.bus.subscribe(seen.append)
    with api.client() as client:
        reply = client.post(f"/api/v1/plans/{api.held}/approve")
        again = client.post(f"/api/v1/plans/{api.held}/approve")
    assert reply.status_code == 200
    assert reply.json()["status"] == "approved"
    assert api.store.plan(api.held)["status"] == "approved"  # type: ignore[index]
    assert [(e.kind, e.data["id"], e.data["status"]) for e in seen] == [
        ("plan", api.held, "approved")
    ]
    assert again.status_code == 409
    assert again.json() == {"error": f"plan {api.held} is approved, not held"}


class RecordingControl:
    """The controller's side of approve and sync, as the composition root provides it."""

    def __init__(self, store: Store, fail_with: Exception | None = None) -> None:
        self.store = store
        self.fail_with = fail_with
        self.calls: list[tuple[str, object]] = []

    def sync(self, dry_run: bool) -> dict[str, Any]:
        self.calls.append(("sync", dry_run))
        if self.fail_with is not None:
            raise self.fail_with
        return {"ports": [], "held": [], "guarded": {}, "applied": False, "dry_run": dry_run}

    def approve(self, plan_id: int) -> dict[str, Any]:
        self.calls.append(("approve", plan_id))
        self.store.approve_plan(plan_id, 0.0)
        found = self.store.plan(plan_id)
        assert found is not None
        return found


@pytest.fixture
def controlled(tmp_path: Path, api_token: str) -> Any:
    config = api_config(tmp_path)
    store = Store(config.store_url())
    held = populate(store)
    control = RecordingControl(store)
    handle = start(config, config.store_url(), EventBus(), control)
    yield Api(handle, store, EventBus(), config, api_token, held), control
    handle.stop()
    store.close()


def test_sync_and_approve_go_to_the_controller(controlled: tuple[Api, RecordingControl]) -> None:
    api, control = controlled
    with api.client() as client:
        dry = client.post("/api/v1/sync", params={"dry_run": "true"})
        real = client.post("/api/v1/sync")
        approved = client.post(f"/api/v1/plans/{api.held}/approve")
    assert dry.json()["dry_run"] is True
    assert real.json()["dry_run"] is False
    assert approved.json()["status"] == "approved"
    assert control.calls == [("sync", True), ("sync", False), ("approve", api.held)]


@pytest.mark.parametrize(
    ("error", "status", "message"),
    [
        (ConfigError("bad inventory", "inv.yaml: vms[0]"), 400, "inv.yaml: vms[0]: bad inventory"),
        (TransientError("switch leaf1 did not answer"), 503, "switch leaf1 did not answer"),
        (RuntimeError("a bug\nwith lines"), 500, "internal error: see the controller's log"),
    ],
)
def test_controller_errors_become_one_json_message(
    controlled: tuple[Api, RecordingControl], error: Exception, status: int, message: str
) -> None:
    api, control = controlled
    control.fail_with = error
    with api.client() as client:
        reply = client.post("/api/v1/sync?dry_run=true")
    assert reply.status_code == status
    assert reply.json() == {"error": message}
    assert "Traceback" not in reply.text


def test_sync_without_a_controller_is_unavailable(api: Api) -> None:
    with api.client() as client:
        reply = client.post("/api/v1/sync?dry_run=true")
    assert reply.status_code == 503
    assert "no controller" in reply.json()["error"]


# ---- errors ------------------------------------------------------------------------------

BAD_REQUESTS = [
    ("GET", "/api/v1/plans/abc", 400, "path parameter 'plan_id'"),
    ("GET", "/api/v1/plans/0", 400, "path parameter 'plan_id'"),
    ("GET", "/api/v1/plans/99999999999", 400, "path parameter 'plan_id'"),
    ("POST", "/api/v1/plans/x1/approve", 400, "path parameter 'plan_id'"),
    ("GET", "/api/v1/plans/999", 404, "no plan 999"),
    ("POST", "/api/v1/plans/999/approve", 404, "no plan 999"),
    ("GET", "/api/v1/audit?limit=many", 400, "query parameter 'limit'"),
    ("GET", "/api/v1/audit?limit=0", 400, "query parameter 'limit'"),
    ("GET", "/api/v1/vlans?vlan=5000", 400, "query parameter 'vlan'"),
    ("GET", "/api/v1/vlans?dynamic=maybe", 400, "query parameter 'dynamic'"),
    ("GET", "/api/v1/plans?status=HELD;drop", 400, "query parameter 'status'"),
    ("POST", "/api/v1/sync?dry_run=perhaps", 400, "query parameter 'dry_run'"),
    ("GET", "/api/v1/events?last_event_id=garbage", 400, "Last-Event-ID 'garbage'"),
    ("GET", "/api/v1/nothing", 404, "Not Found"),
    ("DELETE", "/api/v1/vms", 405, "Method Not Allowed"),
]


@pytest.mark.parametrize(("method", "path", "status", "start_of"), BAD_REQUESTS)
def test_bad_requests_get_one_json_message(
    api: Api, method: str, path: str, status: int, start_of: str
) -> None:
    with api.client() as client:
        reply = client.request(method, path)
    assert reply.status_code == status
    body = reply.json()
    assert list(body) == ["error"]
    assert body["error"].startswith(start_of), body
    assert "\n" not in body["error"]
    assert "Traceback" not in reply.text


def test_openapi_document_lists_every_route_and_the_bearer_scheme(api: Api) -> None:
    with api.client() as client:
        doc = client.get("/api/v1/openapi.json").json()
    assert doc["info"]["title"] == "vmfabric"
    paths = set(doc["paths"])
    for _method, path in PROTECTED:
        if not path.endswith("openapi.json"):
            assert path.split("?")[0].replace("/1", "/{plan_id}") in paths
    assert {"/healthz", "/metrics"} <= paths
    schemes = doc["components"]["securitySchemes"]
    assert schemes["HTTPBearer"]["scheme"] == "bearer"


# ---- start-up errors ---------------------------------------------------------------------


def test_a_missing_token_variable_is_refused_like_a_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    config = api_config(tmp_path)
    with pytest.raises(ConfigError, match=f"environment variable {TOKEN_ENV} .* is not set"):
        start(config, config.store_url(), EventBus())


def test_a_literal_token_is_refused_in_the_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"api\.token: literal passwords are refused"):
        parse_config({"api": {"token": "hunter2hunter2"}}, "vmfabric.yaml", tmp_path)


def test_a_token_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "api.token"
    secret.write_text("s3cret-token\n")
    secret.chmod(0o644)
    config = parse_config(
        {"api": {"listen": "127.0.0.1:0", "token": f"file:{secret}"}}, "vmfabric.yaml", tmp_path
    )
    with pytest.raises(ConfigError, match="has mode 0644"):
        start(config, config.store_url(), EventBus())


def test_a_port_in_use_is_one_transient_line(tmp_path: Path, api_token: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        config = api_config(tmp_path, f"127.0.0.1:{port}")
        with pytest.raises(TransientError) as caught:
            start(config, config.store_url(), EventBus())
    assert str(caught.value) == f"api.listen 127.0.0.1:{port}: the port is in use"


@pytest.mark.parametrize(
    ("listen", "error"),
    [
        ("192.0.2.1:8470", "api.listen 192.0.2.1:8470: Cannot assign requested address"),
        ("no-such-host.invalid:8470", "api.listen no-such-host.invalid:8470: "),
    ],
)
def test_an_address_not_on_this_machine_is_bad_input(
    tmp_path: Path, api_token: str, listen: str, error: str
) -> None:
    config = api_config(tmp_path, listen)
    with pytest.raises(ConfigError) as caught:
        start(config, config.store_url(), EventBus())
    assert str(caught.value).startswith(error)
    assert "\n" not in str(caught.value)


def test_bad_listen_syntax_is_refused_with_its_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"vmfabric.yaml: api.listen: 'localhost' is not host"):
        parse_config({"api": {"listen": "localhost", "token": "env:X_TOKEN"}}, "vmfabric.yaml")


def self_signed(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "api.crt", folder / "api.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


def test_tls_serves_https_and_bad_files_are_one_line(tmp_path: Path, api_token: str) -> None:
    cert, key = self_signed(tmp_path)
    data = {"api": {"listen": "127.0.0.1:0", "token": f"env:{TOKEN_ENV}",
                    "tls": {"cert": "api.crt", "key": "api.key"}}}  # fmt: skip
    config = parse_config(data, "vmfabric.yaml", tmp_path)
    handle = start(config, f"sqlite:///{tmp_path / 'v.db'}", EventBus())
    try:
        assert handle.url.startswith("https://127.0.0.1:")
        headers = {"Authorization": f"Bearer {api_token}"}
        trust = ssl.create_default_context(cafile=str(cert))
        with httpx.Client(verify=trust, headers=headers) as client:
            assert client.get(f"{handle.url}/api/v1/vms").json() == []
    finally:
        handle.stop()
    key.write_text("not a key")
    with pytest.raises(ConfigError, match=r"^api\.tls: cannot load .*api\.crt with .*api\.key"):
        start(config, f"sqlite:///{tmp_path / 'v.db'}", EventBus())
    data["api"]["tls"] = {"cert": "missing.crt", "key": "api.key"}
    config = parse_config(data, "vmfabric.yaml", tmp_path)
    with pytest.raises(ConfigError, match=r"^api\.tls: .*missing\.crt: file not found"):
        start(config, f"sqlite:///{tmp_path / 'v.db'}", EventBus())


def test_stop_frees_the_port(tmp_path: Path, api_token: str) -> None:
    config = api_config(tmp_path)
    handle = start(config, config.store_url(), EventBus())
    port = handle.port
    handle.stop()
    again = api_config(tmp_path, f"127.0.0.1:{port}")
    second = start(again, again.store_url(), EventBus())
    second.stop()
    assert second.port == port


def test_a_cached_view_follows_every_store_write(api: Api) -> None:
    """Views are kept while the store is unchanged: a write by another connection (the
    controller, `vmfabric approve`) is seen by the very next request."""
    with api.client() as client:
        before = client.get("/api/v1/vms").json()
        assert client.get("/api/v1/vms").json() == before
        move_vm(api.store, api.bus, "web-01", "esx02", port("leaf1", "p2", "1,110", "110"))
        after = {v["name"]: v["host"] for v in client.get("/api/v1/vms").json()}
        assert after["web-01"] == "esx02"
        api.store.set_port_states([port("leaf1", "p2", "1,110,130", "110,130")], 2.0)
        p2 = client.get("/api/v1/interfaces?port=p2").json()
        assert [i["vlans"] for i in p2 if i["switch"] == "leaf1"] == [[1, 110, 130]]
        with Store(api.config.store_url()) as other:  # another process's connection
            other.set_switch_status("leaf2", "ok", now=3.0)
        assert [s["state"] for s in client.get("/api/v1/switches").json()] == ["ok", "ok"]


def test_api_token_prints_a_fresh_random_token_and_version_prints_the_version() -> None:
    runner = CliRunner()
    first = runner.invoke(cli_app, ["api-token"])
    second = runner.invoke(cli_app, ["api-token"])
    assert first.exit_code == second.exit_code == 0
    token = first.stdout.strip()
    assert len(token) >= 40
    assert token != second.stdout.strip()
    assert token.replace("-", "").replace("_", "").isalnum()
    version = runner.invoke(cli_app, ["--version"])
    assert version.exit_code == 0
    assert version.stdout.strip() == f"vmfabric {__version__}"
