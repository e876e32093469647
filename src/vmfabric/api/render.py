"""JSON responses rendered straight from the views' lists and dicts: no per-item model
validation, which would cost more than the query at 10,000 VMs."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response


def dumps(data: Any) -> bytes:
    """Compact JSON, the values ``show --json`` prints (``default=str`` like it)."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str).encode()


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(data), status, headers, media_type="application/json")
