"""The FastAPI application: routes, bearer-token check, the UI's files and ``/metrics``.

- ``/api/v1/<view>`` returns exactly ``vmfabric show <view> --json`` (``reads`` is the one
  code path for both); ``/api/v1/events`` is the live stream (``events``).
- ``POST /api/v1/plans/{id}/approve`` and ``POST /api/v1/sync?dry_run=true`` go to the
  controller's ``Control``. Without one (an API server beside no controller), approve
  marks the plan approved in the store, as ``vmfabric approve`` does, and sync answers 503.
- Everything under ``/api/v1`` needs ``Authorization: Bearer <token>`` (401 without);
  ``/healthz``, ``/metrics`` and the web UI's files (``/``, ``/ui/...``) do not (the UI
  asks for the token and sends it with each call).
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Path, Query, Request
from fastapi.responses import FileResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import SecretStr
from starlette.responses import Response

from vmfabric import __version__
from vmfabric.api import errors, reads
from vmfabric.api.cache import ViewCache
from vmfabric.api.events import EventStreams, parse_last_id
from vmfabric.api.render import dumps, json_response, raw_json
from vmfabric.config import Config
from vmfabric.core.errors import ConfigError
from vmfabric.runtime.bus import EventBus
from vmfabric.runtime.telemetry import Telemetry
from vmfabric.store import Store

MAX_ID = 2**31 - 1
PlanId = Annotated[int, Path(ge=1, le=MAX_ID, description="A plan id from /api/v1/plans.")]
Name = Annotated[str | None, Query(min_length=1, max_length=255)]
_bearer = HTTPBearer(auto_error=False, description="The token of `api.token` in the config.")


class Control(Protocol):
    """What the running controller does for the API (called from a worker thread; may
    block; raise ``ConfigError`` for bad input, ``TransientError`` when it cannot now)."""

    def sync(self, dry_run: bool) -> dict[str, Any]:
        """One reconcile of everything (the ``sync --json`` document)."""

    def approve(self, plan_id: int) -> dict[str, Any]:
        """Approve a held plan; the plan as ``/api/v1/plans`` shows it."""


@dataclass
class ApiContext:
    """What the routes use: one per server."""

    config: Config
    store: Store
    bus: EventBus
    token: SecretStr
    telemetry: Telemetry
    streams: EventStreams
    controllers: Callable[[], list[dict[str, Any]]]
    cache: ViewCache
    control: Control | None = None

    def view(self, key: str, read: Callable[[], Any]) -> Response:
        """The JSON of ``read()``, from the cache while the store is unchanged."""
        return raw_json(self.cache.get(key, lambda: dumps(read())))


def static_dir() -> str:
    return str(resources.files("vmfabric.api") / "static")


def create_app(ctx: ApiContext) -> FastAPI:
    app = FastAPI(
        title="vmfabric",
        version=__version__,
        description="vmfabric's REST API: the JSON of `vmfabric show`, plan approval, "
        "one-shot sync and live events.",
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    errors.install(app)
    api = APIRouter(prefix="/api/v1", dependencies=[Depends(_auth(ctx.token))])
    _inventory_views(api, ctx)
    _state_views(api, ctx)
    _writes(api, ctx)
    _stream(api, ctx)

    @api.get("/openapi.json", include_in_schema=False)
    def openapi() -> Response:
        return json_response(app.openapi())

    app.include_router(api)
    _public(app, ctx)
    return app


def _auth(token: SecretStr) -> Callable[..., None]:
    expected = token.get_secret_value().encode()

    def check(creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
        given = creds.credentials.encode() if creds is not None else b""
        if not given or not hmac.compare_digest(given, expected):
            raise HTTPException(
                401, "a valid bearer token is required", {"WWW-Authenticate": "Bearer"}
            )

    return check


def _inventory_views(api: APIRouter, ctx: ApiContext) -> None:
    """GET routes: one per ``show`` view, same parameters, same JSON."""
    store, view = ctx.store, ctx.view

    @api.get("/sessions", summary="show session --json")
    def sessions(name: Name = None) -> Response:
        return view(f"sessions?{name}", lambda: reads.sessions(store, name))

    @api.get("/vms", summary="show vm --json")
    def vms(name: Name = None) -> Response:
        return view(f"vms?{name}", lambda: reads.vms(store, name))

    @api.get("/hosts", summary="show host --json")
    def hosts() -> Response:
        return view("hosts", lambda: reads.hosts(store))

    @api.get("/interfaces", summary="show interface --json")
    def interfaces(port: Name = None) -> Response:
        return view(f"interfaces?{port}", lambda: reads.interfaces(store, port))

    @api.get("/vlans", summary="show vlan --json")
    def vlans(
        vlan: Annotated[int | None, Query(ge=1, le=4094)] = None, dynamic: bool = False
    ) -> Response:
        return view(f"vlans?{vlan}&{dynamic}", lambda: reads.vlans(store, vlan, dynamic))


def _state_views(api: APIRouter, ctx: ApiContext) -> None:
    store, view = ctx.store, ctx.view

    @api.get("/switches", summary="show switch --json")
    def switches() -> Response:
        return view("switches", lambda: reads.switches(store))

    @api.get("/plans", summary="show plan --json")
    def plans(status: Annotated[str | None, Query(pattern=r"^[a-z_]{1,32}$")] = None) -> Response:
        return view(f"plans?{status}", lambda: reads.plans(store, status=status))

    @api.get("/plans/{plan_id}", summary="One plan")
    def plan(plan_id: PlanId) -> Response:
        return json_response(_one_plan(store, plan_id))

    @api.get("/audit", summary="show audit --json")
    def audit(
        limit: Annotated[int, Query(ge=1, le=100_000)] = 50,
        switch: Name = None,
    ) -> Response:
        return view(f"audit?{limit}&{switch}", lambda: reads.audit(store, limit, switch))

    @api.get("/groups", summary="show group --json")
    def groups(name: Name = None) -> Response:
        return view(f"groups?{name}", lambda: reads.groups(ctx.config, store, name))

    @api.get("/policies", summary="show policy --json")
    def policies() -> Response:
        return view("policies", lambda: reads.policies(ctx.config, store))

    @api.get("/controllers", summary="show controller --json")
    def controllers() -> Response:
        return json_response(ctx.controllers())


def _one_plan(store: Store, plan_id: int) -> dict[str, Any]:
    found = reads.plans(store, plan_id=plan_id)
    if not found:
        raise HTTPException(404, f"no plan {plan_id}")
    return found[0]


def _writes(api: APIRouter, ctx: ApiContext) -> None:
    @api.post("/plans/{plan_id}/approve", summary="vmfabric approve PLAN_ID")
    def approve(plan_id: PlanId) -> Response:
        found = _one_plan(ctx.store, plan_id)
        if found["status"] != "held":
            raise HTTPException(409, f"plan {plan_id} is {found['status']}, not held")
        if ctx.control is not None:
            return json_response(ctx.control.approve(plan_id))
        return json_response(_approve_in_store(ctx, plan_id, found))

    @api.post("/sync", summary="vmfabric sync [--dry-run] --json")
    def sync(dry_run: bool = False) -> Response:
        if ctx.control is None:
            raise HTTPException(503, "no controller runs beside this API server: sync is off")
        return json_response(ctx.control.sync(dry_run))


def _approve_in_store(ctx: ApiContext, plan_id: int, found: dict[str, Any]) -> dict[str, Any]:
    """``vmfabric approve``: mark it approved; the controller applies it."""
    try:
        ctx.store.approve_plan(plan_id, time.time())
    except ConfigError as err:  # approved or applied meanwhile
        raise HTTPException(409, str(err)) from None
    ctx.bus.publish("plan", {"id": plan_id, "target": found["switch"], "status": "approved"})
    return _one_plan(ctx.store, plan_id)


def _stream(api: APIRouter, ctx: ApiContext) -> None:
    @api.get(
        "/events",
        summary="Live events (Server-Sent Events)",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    def events(
        last_event_id: Annotated[str | None, Header(max_length=80)] = None,
        last_event_id_query: Annotated[
            str | None, Query(alias="last_event_id", max_length=80)
        ] = None,
        kinds: Annotated[str | None, Query(pattern=r"^[a-z_]+(,[a-z_]+)*$")] = None,
    ) -> StreamingResponse:
        after = parse_last_id(last_event_id or last_event_id_query, ctx.bus.boot)
        wanted = frozenset(kinds.split(",")) if kinds else frozenset()
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        body = ctx.streams.stream(after, wanted)
        return StreamingResponse(body, media_type="text/event-stream", headers=headers)


def _public(app: FastAPI, ctx: ApiContext) -> None:
    folder = static_dir()

    @app.get("/healthz", summary="Liveness: no token needed")
    def healthz() -> Response:
        return json_response({"status": "ok", "version": __version__})

    @app.get("/metrics", summary="Prometheus metrics: no token needed")
    def metrics() -> Response:
        return Response(generate_latest(ctx.telemetry.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(f"{folder}/index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/ui", StaticFiles(directory=folder), name="ui")

    @app.middleware("http")
    async def no_sniff(request: Request, call_next: Callable[[Request], Any]) -> Response:
        response: Response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response
