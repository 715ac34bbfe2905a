"""Typed domain errors and their RFC 9457 problem+json rendering.

Domain code raises these; one exception handler per app renders them, so no
``HTTPException`` leaks out of ``api/``.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://pytake.dev/problems/"


class DomainError(Exception):
    status: int = 400
    code: str = "bad_request"
    title: str = "Bad request"

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extra = extra


class NotFound(DomainError):
    status, code, title = 404, "not_found", "Not found"


class Conflict(DomainError):
    status, code, title = 409, "conflict", "Conflict"


class Unauthorized(DomainError):
    status, code, title = 401, "unauthorized", "Authentication required"


class Forbidden(DomainError):
    status, code, title = 403, "forbidden", "Forbidden"


class InvalidInput(DomainError):
    status, code, title = 422, "invalid_input", "Invalid input"


class UnprocessableState(DomainError):
    status, code, title = 409, "invalid_state", "Action not allowed in the current state"


class SessionRevoked(Unauthorized):
    code, title = "session_revoked", "Session revoked"


class OrganizationSuspended(Forbidden):
    code, title = "organization_suspended", "Organization suspended"


class PlanLimitExceeded(DomainError):
    """The action would exceed a limit of the organization's plan (402: upgrade to proceed)."""

    status, code, title = 402, "plan_limit_exceeded", "Plan limit reached"

    def __init__(self, limit: str, allowed: int, used: int) -> None:
        super().__init__(
            f"the plan allows {allowed} {limit.replace('_', ' ')}; {used} in use",
            limit=limit,
            allowed=allowed,
            used=used,
        )


class TooManyRequests(DomainError):
    status, code, title = 429, "rate_limited", "Too many requests"


class ServiceUnavailable(DomainError):
    status, code, title = 503, "unavailable", "Service unavailable"


class StatementTimeout(ServiceUnavailable):
    """A statement ran past its ``statement_timeout`` (or the server cancelled it):
    the database is busier than the request can wait for, so try again shortly."""

    code, title = "statement_timeout", "The database did not answer in time"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail, retry_after=1)


def problem(
    status: int, code: str, title: str, detail: str | None = None, **extra: Any
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": TYPE_BASE + code,
        "title": title,
        "status": status,
        "code": code,
    }
    if detail:
        body["detail"] = detail
    body.update(extra)
    headers = {}
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if "retry_after" in extra:
        headers["Retry-After"] = str(int(extra["retry_after"]))
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def install_problem_handlers(app: FastAPI) -> None:
    async def on_domain(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, DomainError)
        return problem(exc.status, exc.code, exc.title, exc.detail, **exc.extra)

    async def on_validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")}
            for e in exc.errors()
        ]
        return problem(
            422, "invalid_input", "Invalid input", "request failed validation", errors=errors
        )

    async def on_http(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return problem(exc.status_code, code, str(exc.detail), None)

    app.add_exception_handler(DomainError, on_domain)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
