"""Structured JSON logs with request id, trace id and organization id on every line.

Message bodies and secrets are never passed to loggers at INFO: callers log ids
and counts; ``extra={"fields": {...}}`` adds structured keys.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace

from pytake_common.context import organization_id_var, request_id_var

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "color_message",  # uvicorn's ANSI-coloured duplicate of msg
}


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            out["trace_id"] = format(span.trace_id, "032x")
            out["span_id"] = format(span.span_id, "016x")
        if rid := request_id_var.get():
            out["request_id"] = rid
        if org := organization_id_var.get():
            out["organization_id"] = org
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


#: Loggers of HTTP clients that write the URL of every request (httpx: INFO "HTTP Request").
HTTP_CLIENT_LOGGERS = ("httpx",)
_QUERY = re.compile(r"(https?://[^\s?#\"']*)\?[^\s#\"']*")


class UrlQueryFilter(logging.Filter):
    """Cut the query string off every URL a record carries.

    Signed URLs (Meta's media downloads, presigned S3 links) carry their credential
    in the query string; the path is enough to tell which call was made.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = _QUERY.sub(r"\1?[redacted]", record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_without_query(arg) for arg in record.args)
        return True


def _without_query(arg: object) -> object:
    if isinstance(arg, int | float | bool) or arg is None:
        return arg
    text = str(arg)
    redacted = _QUERY.sub(r"\1?[redacted]", text)
    return arg if redacted == text else redacted


def hide_url_queries() -> None:
    """Install :class:`UrlQueryFilter` on the HTTP clients' loggers (once)."""
    for name in HTTP_CLIENT_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, UrlQueryFilter) for f in logger.filters):
            logger.addFilter(UrlQueryFilter())


def configure_logging(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiokafka is chatty at INFO about group rebalances; keep it at WARNING.
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    hide_url_queries()
