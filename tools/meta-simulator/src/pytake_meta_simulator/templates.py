"""Message templates: the Graph API's ``/{version}/{waba_id}/message_templates`` and a
control endpoint that plays Meta's review.

- ``GET``: the WABA's templates, ``limit`` per page (default 25), Meta's cursor
  paging (``paging.cursors.before/after`` and an absolute ``paging.next`` URL,
  absent on the last page).
- ``POST`` ``{name, language, category, components}``: answers
  ``{id, status: "PENDING", category}``; a name already present in that language
  is refused (400, code 100, subcode 2388024) as on Meta.
- ``DELETE ?name=``: deletes every language of the name; an unknown name is 400/100.
- ``POST /_sim/templates/{waba_id}/{name}/status`` ``{status, reason?, language?}``:
  flips the status and posts a signed ``message_template_status_update`` webhook
  (through the WABA's first number's app secret and webhook URL).

The bearer token must be the access token of one of the WABA's numbers.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
import time
from typing import Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, Field

from pytake_meta_simulator.deps import SimulatorContext, get_ctx
from pytake_meta_simulator.errors import GraphError
from pytake_meta_simulator.graph import _json_object, authorized_waba
from pytake_meta_simulator.state import Template, WebhookDelivery

router = APIRouter(tags=["graph"])
control_router = APIRouter(prefix="/_sim", tags=["control"])

CATEGORIES = frozenset({"MARKETING", "UTILITY", "AUTHENTICATION"})
_NAME = re.compile(r"^[a-z0-9_]{1,512}$")
_LANGUAGE = re.compile(r"^[a-z]{2,3}(_[A-Za-z]{2,4})?$")
DEFAULT_LIMIT = 25
MAX_LIMIT = 1000


def _shown(template: Template) -> dict[str, Any]:
    return {
        "name": template.name,
        "language": template.language,
        "status": template.status,
        "category": template.category,
        "components": template.components,
        "id": template.id,
    }


def _cursor(index: int) -> str:
    return base64.urlsafe_b64encode(f"idx:{index}".encode()).decode()


def _index(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor.encode()).decode()
        prefix, _, number = text.partition(":")
        if prefix != "idx":
            raise ValueError(cursor)
        return max(0, int(number))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise GraphError.invalid_parameter(
            "Invalid parameter: after is not a valid cursor."
        ) from None


@router.get("/{version}/{waba_id}/message_templates")
async def list_templates(
    version: str,
    waba_id: str,
    request: Request,
    limit: int = Query(default=DEFAULT_LIMIT),
    after: str | None = None,
    ctx: SimulatorContext = Depends(get_ctx),
) -> dict[str, Any]:
    await authorized_waba(ctx, request, version, waba_id, "get")
    if not 1 <= limit <= MAX_LIMIT:
        raise GraphError.invalid_parameter(f"Invalid parameter: limit must be 1..{MAX_LIMIT}.")
    book = await ctx.store.templates(waba_id)
    start = _index(after) if after else 0
    page = book[start : start + limit]
    answer: dict[str, Any] = {"data": [_shown(t) for t in page]}
    if page:
        end = start + len(page)
        paging: dict[str, Any] = {"cursors": {"before": _cursor(start), "after": _cursor(end)}}
        if end < len(book):
            query = {k: v for k, v in request.query_params.items() if k not in ("after", "limit")}
            query.update(limit=str(limit), after=_cursor(end))
            paging["next"] = f"{request.url.replace(query=None)}?{urlencode(query)}"
        answer["paging"] = paging
    return answer


@router.post("/{version}/{waba_id}/message_templates")
async def create_template(
    version: str, waba_id: str, request: Request, ctx: SimulatorContext = Depends(get_ctx)
) -> dict[str, Any]:
    await authorized_waba(ctx, request, version, waba_id, "post")
    body = await _json_object(request)
    name, language, category = body.get("name"), body.get("language"), body.get("category")
    components = body.get("components", [])
    if not isinstance(name, str) or not _NAME.match(name):
        raise GraphError.invalid_parameter(
            "Invalid parameter: name must be lowercase letters, digits and underscores."
        )
    if not isinstance(language, str) or not _LANGUAGE.match(language):
        raise GraphError.invalid_parameter("Invalid parameter: language is not a valid locale.")
    if not isinstance(category, str) or category.upper() not in CATEGORIES:
        raise GraphError.invalid_parameter(
            "Invalid parameter: category must be MARKETING, UTILITY or AUTHENTICATION."
        )
    if (
        not isinstance(components, list)
        or not components
        or not all(isinstance(c, dict) and isinstance(c.get("type"), str) for c in components)
    ):
        raise GraphError.invalid_parameter(
            "Invalid parameter: components must be a non-empty list of objects with a type."
        )
    template = await ctx.store.add_template(
        Template(
            id=str(10**15 + secrets.randbelow(9 * 10**15)),
            waba_id=waba_id,
            name=name,
            language=language,
            category=category.upper(),
            components=components,
        )
    )
    if template is None:
        raise GraphError(
            400,
            100,
            "Invalid parameter",
            subcode=2388024,
            details=f"Content in this language already exists for template {name}.",
        )
    return {"id": template.id, "status": template.status, "category": template.category}


@router.delete("/{version}/{waba_id}/message_templates")
async def delete_template(
    version: str,
    waba_id: str,
    request: Request,
    name: str | None = None,
    ctx: SimulatorContext = Depends(get_ctx),
) -> dict[str, Any]:
    await authorized_waba(ctx, request, version, waba_id, "delete")
    if not name:
        raise GraphError.invalid_parameter("Invalid parameter: name is required.")
    if await ctx.store.delete_templates(waba_id, name) == 0:
        raise GraphError(
            400, 100, "Invalid parameter", subcode=2593002, details=f"Template {name} not found."
        )
    return {"success": True}


class TemplateStatusIn(BaseModel):
    status: Literal["APPROVED", "REJECTED", "PENDING", "PAUSED", "DISABLED", "FLAGGED"]
    reason: str = Field(default="NONE", max_length=200)
    #: Only this language (default: every language of the name).
    language: str | None = None


@control_router.post("/templates/{waba_id}/{name}/status")
async def set_template_status(
    waba_id: str, name: str, body: TemplateStatusIn, ctx: SimulatorContext = Depends(get_ctx)
) -> list[WebhookDelivery]:
    """Play Meta's review: set the status and post one signed webhook per template changed."""
    members = await ctx.store.numbers_of_waba(waba_id)
    if not members:
        raise HTTPException(404, f"no number registered for WABA {waba_id!r}")
    changed = await ctx.store.set_template_status(
        waba_id, name, body.language, body.status, body.reason
    )
    if not changed:
        raise HTTPException(404, f"no template {name!r} in WABA {waba_id!r}")
    deliveries = []
    for template in changed:
        payload = template_status_payload(template)
        deliveries.append(await ctx.sender.post(members[0], kind="raw", payload=payload))
    return deliveries


def template_status_payload(template: Template) -> dict[str, Any]:
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": template.waba_id,
                "time": int(time.time()),
                "changes": [
                    {
                        "value": {
                            "event": template.status,
                            "message_template_id": int(template.id),
                            "message_template_name": template.name,
                            "message_template_language": template.language,
                            "reason": template.rejected_reason,
                        },
                        "field": "message_template_status_update",
                    }
                ],
            }
        ],
    }
