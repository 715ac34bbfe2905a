"""Meta's public webhook: ``GET`` handshake and ``POST`` deliveries.

``POST`` deliveries come in at Meta's rate, so :class:`WebhookEdge` answers them
before FastAPI's middleware, router and exception handling (about a third of the
process's CPU per delivery), with the same request id, span, metrics and answers.
"""

import hmac
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Header, Query, Request
from fastapi.responses import PlainTextResponse
from fastapi.routing import APIRoute
from sqlalchemy import select
from starlette.types import ASGIApp, Receive, Scope, Send

from pytake_common.errors import DomainError, Forbidden, problem
from pytake_common.peers import client_address
from pytake_common.web import ObservabilityMiddleware
from pytake_whatsapp_gateway.api.deps import DB, Intake
from pytake_whatsapp_gateway.numbers import verify_token_hash
from pytake_whatsapp_gateway.tables import numbers
from pytake_whatsapp_gateway.webhooks.intake import WebhookIntake

PATH = "/webhooks/whatsapp"
router = APIRouter(prefix=PATH, tags=["webhooks"])

MAX_CHALLENGE = 512


class PayloadTooLarge(DomainError):
    status, code, title = 413, "payload_too_large", "Payload too large"


@router.get("", response_class=PlainTextResponse)
async def handshake(
    db: DB,
    mode: Annotated[str | None, Query(alias="hub.mode")] = None,
    verify_token: Annotated[str | None, Query(alias="hub.verify_token")] = None,
    challenge: Annotated[str | None, Query(alias="hub.challenge")] = None,
) -> PlainTextResponse:
    """Answer Meta's subscription check with the challenge when the token is known."""
    if mode != "subscribe" or not verify_token or challenge is None:
        raise Forbidden("webhook verification refused")
    if len(challenge) > MAX_CHALLENGE:
        raise Forbidden("webhook verification refused")
    digest = verify_token_hash(verify_token)
    async with db.transaction(bypass_rls=True) as session:  # no tenant known yet
        stored = await session.scalar(
            select(numbers.c.verify_token_hash)
            .where(numbers.c.verify_token_hash == digest)
            .limit(1)
        )
    if stored is None or not hmac.compare_digest(stored, digest):
        raise Forbidden("webhook verification refused")
    return PlainTextResponse(challenge)


OK = b'{"status":"ok"}'
_OK_HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(OK))]


@router.post(
    "",
    responses={
        401: {"description": "Missing or wrong X-Hub-Signature-256"},
        400: {"description": "Not a WhatsApp webhook payload"},
        413: {"description": "Body larger than 3 MB, or more entries/changes/elements"},
        429: {"description": "This address sent too many requests that were refused"},
    },
)
async def receive(
    request: Request,
    intake: Intake,
    x_hub_signature_256: Annotated[str | None, Header()] = None,
) -> dict[str, str]:
    """Verify the signature over the raw bytes, record the delivery durably, answer 200.

    While the app's fast paths are on, :class:`WebhookEdge` answers these requests
    before FastAPI; this route serves them when they are off (tests compare both)."""
    await _accept(request, intake, x_hub_signature_256)
    return {"status": "ok"}


async def _accept(request: Request, intake: WebhookIntake, signature: str | None) -> None:
    settings = request.app.state.settings
    source = client_address(request, settings.trusted_proxies)
    intake.check_budget(source)
    try:
        body = await _read_body(request, settings.webhook_max_body_bytes)
    except PayloadTooLarge:
        intake.refused(source)
        raise
    await intake.receive(body, signature, source)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body exceeds {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


class WebhookEdge:
    """The outermost ASGI app of whatsapp-gateway: ``POST /webhooks/whatsapp`` never
    enters FastAPI.

    A delivery goes through pytake_common's :class:`ObservabilityMiddleware` (built
    with the app's own arguments: the same request id rule, span and metrics, labelled
    with the route's path) and then straight to :func:`_accept`; a :class:`DomainError`
    becomes the problem+json the app's handler would write. Everything else (the
    handshake, other paths and methods, lifespan) goes to ``stack``, the app's usual
    middleware stack; so does every request while the app's fast paths are off or its
    dependencies overridden (as :class:`FastPathRoute` does).
    """

    def __init__(self, app: FastAPI, stack: ASGIApp) -> None:
        self.app = app
        self.stack = stack
        #: What FastAPI's router would set: the route's metrics are labelled with its path.
        self.route = next(
            r for r in router.routes if isinstance(r, APIRoute) and "POST" in (r.methods or ())
        )
        # Built with the arguments create_service_app gave the app's own.
        args, kwargs = next(
            (tuple[Any, ...](m.args), dict[str, Any](m.kwargs))
            for m in app.user_middleware
            if getattr(m, "cls", None) is ObservabilityMiddleware
        )
        self.observed: ASGIApp = ObservabilityMiddleware(self._deliver, *args, **kwargs)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["path"] == PATH
            and scope["method"] == "POST"
            and getattr(self.app.state, "fast_paths", True)
            and not self.app.dependency_overrides
        ):
            scope["app"] = self.app
            scope["route"] = self.route
            await self.observed(scope, receive, send)
        else:
            await self.stack(scope, receive, send)

    async def _deliver(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            await _accept(
                request,
                request.app.state.webhook_intake,
                request.headers.get("x-hub-signature-256"),
            )
        except DomainError as exc:
            await problem(exc.status, exc.code, exc.title, exc.detail, **exc.extra)(
                scope, receive, send
            )
            return
        await send({"type": "http.response.start", "status": 200, "headers": _OK_HEADERS})
        await send({"type": "http.response.body", "body": OK})
