"""Message history, agent replies of every WhatsApp type, and private notes."""

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from pytake_common.errors import OrganizationSuspended
from pytake_common.idempotency import IdempotencyGuard, IdempotencyKey, fingerprint, idempotent
from pytake_common.rawpg import TenantReads
from pytake_common.security import READERS, Principal, Reader, Worker, authorize
from pytake_common.strict import StrictParams, Unusual, read_query
from pytake_common.web import FastPathRoute, fast_path
from pytake_conversations import listing, sending
from pytake_conversations.api.deps import (
    DB,
    Limit,
    Organizations,
    Reads,
    WindowHours,
    reads_of,
)
from pytake_conversations.outbound import NoteInput, SendMessage
from pytake_conversations.senders import Sender
from pytake_conversations.views import Message

router = APIRouter(prefix="/v1/conversations", tags=["messages"], route_class=FastPathRoute)


class MessagePage(BaseModel):
    items: list[Message]
    next_cursor: str | None
    #: with ``before``: whether older messages remain
    has_more: bool = False


async def _list_messages_fast(request: Request) -> Response | None:
    """``list_messages`` without FastAPI's dependency solving, for plain requests."""
    try:
        (args,) = read_query(request, HISTORY_PARAMS)
    except Unusual:
        return None
    principal = await authorize(request, READERS)
    return await history_page(reads_of(request), principal, **args)


@router.get("/{conversation_id}/messages", response_model=MessagePage)
@fast_path(_list_messages_fast)
async def list_messages(
    conversation_id: uuid.UUID,
    principal: Reader,
    reads: Reads,
    limit: Limit = 50,
    cursor: str | None = None,
    before: Annotated[uuid.UUID | None, Query(description="a message id: older ones")] = None,
    after: Annotated[uuid.UUID | None, Query(description="a message id: newer ones")] = None,
    latest: Annotated[bool, Query(description="the newest page")] = False,
    include_notes: bool = True,
) -> Response:
    """The conversation's history, always oldest first in a page.

    Forward (default): from the start, ``next_cursor`` pages on; ``after=<message id>``
    starts after a message. Backward: ``latest=true`` gives the newest page and
    ``before=<message id>`` the page older than a message (``has_more`` tells if more
    remain) — what a chat window scrolling up needs.
    """
    return await history_page(
        reads,
        principal,
        conversation_id=conversation_id,
        limit=limit,
        cursor=cursor,
        before=before,
        after=after,
        latest=latest,
        include_notes=include_notes,
    )


#: the history's fast path's reading of the path (conversation_id) and the query
HISTORY_PARAMS = StrictParams.of(list_messages, path=("conversation_id",))


async def history_page(reads: TenantReads, principal: Principal, **query: Any) -> Response:
    """A page of the history as JSON (both the endpoint and its fast path answer with it;
    ``query``: :func:`pytake_conversations.listing.history_json`'s)."""
    body = await listing.history_json(reads, principal.organization_id, **query)
    return Response(body, media_type="application/json")


@router.post(
    "/{conversation_id}/messages",
    status_code=202,
    response_model=Message,
    responses={
        402: {"description": "monthly business messages of the plan used up"},
        403: {"description": "the organization is suspended (`organization_suspended`)"},
        404: {"description": "no such conversation in this organization"},
        409: {"description": "the conversation is closed (`conversation_closed`)"},
        422: {
            "description": "outside the 24-hour window (`outside_customer_service_window`), "
            "blocked contact (`contact_blocked`), Idempotency-Key reused with another body, "
            "or invalid input"
        },
    },
)
async def send_message(
    conversation_id: uuid.UUID,
    body: SendMessage,
    principal: Worker,
    db: DB,
    hours: WindowHours,
    directory: Organizations,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Queue a message (text, media, template, interactive, reaction, location): stored as
    ``pending`` and sent by whatsapp-gateway.

    Outside the customer-service window only templates may be sent. With
    ``Idempotency-Key`` a retry answers exactly what the first call answered and sends
    nothing twice; the key reused with a different body is refused (422).
    """
    org = principal.organization_id
    if directory is not None and directory.is_suspended(org):
        raise OrganizationSuspended("the organization is suspended; nothing can be sent")
    fp = fingerprint(
        "POST", f"/v1/conversations/{conversation_id}/messages", body.model_dump(mode="json")
    )
    async with db.transaction(organization_id=org) as session:
        guard = IdempotencyGuard(session, org, principal.user_id, idempotency_key, fp)
        answer = await idempotent(
            guard,
            202,
            lambda: sending.request_send(
                session, Sender.of(principal), conversation_id, body, hours, directory
            ),
        )
    return answer.response()


@router.post("/{conversation_id}/notes", status_code=201, response_model=Message)
async def add_note(
    conversation_id: uuid.UUID,
    body: NoteInput,
    principal: Worker,
    db: DB,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """A private note for the team: stored in the history, never sent to the customer."""
    org = principal.organization_id
    fp = fingerprint(
        "POST", f"/v1/conversations/{conversation_id}/notes", body.model_dump(mode="json")
    )
    async with db.transaction(organization_id=org) as session:
        guard = IdempotencyGuard(session, org, principal.user_id, idempotency_key, fp)

        answer = await idempotent(
            guard,
            201,
            lambda: sending.add_note(session, Sender.of(principal), conversation_id, body.body),
        )
    return answer.response()
