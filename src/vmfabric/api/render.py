"""JSON responses rendered straight from the views' lists and dicts (orjson): no per-item
model validation, which would cost more than the query at 10,000 VMs."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

_OPTIONS = orjson.OPT_NON_STR_KEYS


def dumps(data: Any) -> bytes:
    """Compact JSON of the values ``show --json`` prints (``default=str`` like it)."""
    return orjson.dumps(data, default=str, option=_OPTIONS)


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return raw_json(dumps(data), status, headers)


def raw_json(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(body, status, headers, media_type="application/json")
