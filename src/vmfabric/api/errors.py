"""Every API error is JSON with one message, ``{"error": "..."}``, never a traceback.

400: bad ids or parameters (and ``ConfigError`` raised by a view or the runtime); 401: no
or wrong bearer token; 404: unknown path or object; 409: a plan that is not held; 503: the
store or the controller cannot answer now (``TransientError``, ``LeaseLost``); 500: a bug
(logged with its traceback on the controller, never sent).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from vmfabric.api.render import json_response
from vmfabric.core.errors import ConfigError, PermanentError, TransientError, one_line

log = logging.getLogger("vmfabric.api")
_WHERE = {"query": "query parameter", "path": "path parameter", "header": "header"}


def error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return json_response({"error": one_line(message)}, status, headers)


def validation_message(exc: RequestValidationError) -> str:
    """The first problem of a request, naming the parameter: ``query parameter 'limit':
    Input should be a valid integer``."""
    problems: list[Any] = list(exc.errors())
    if not problems:
        return "bad request"
    first = problems[0]
    loc = [str(part) for part in first.get("loc", ())]
    where = _WHERE.get(loc[0], loc[0]) if loc else "request"
    name = f" {loc[-1]!r}" if len(loc) > 1 else ""
    return f"{where}{name}: {first.get('msg', 'is not valid')}"


def install(app: FastAPI) -> None:
    """Register the handlers above on ``app``."""

    async def on_validation(_req: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return error(400, validation_message(exc))

    async def on_http(_req: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        message = exc.detail if isinstance(exc.detail, str) else "error"
        return error(exc.status_code, message, dict(exc.headers or {}))

    async def on_config(_req: Request, exc: Exception) -> Response:
        return error(400, str(exc))

    async def on_unavailable(_req: Request, exc: Exception) -> Response:
        return error(503, str(exc))

    async def on_refused(_req: Request, exc: Exception) -> Response:
        return error(502, str(exc))

    async def on_bug(req: Request, exc: Exception) -> Response:
        log.error("API %s %s failed", req.method, req.url.path, exc_info=exc)
        return error(500, "internal error: see the controller's log")

    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(HTTPException, on_http)
    app.add_exception_handler(ConfigError, on_config)
    app.add_exception_handler(TransientError, on_unavailable)
    app.add_exception_handler(PermanentError, on_refused)
    app.add_exception_handler(Exception, on_bug)
