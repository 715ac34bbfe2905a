"""``POST /v1/conversations``: an agent writes to a contact first (a template, or a text
while the customer's 24-hour window is open)."""

import uuid
from typing import Self

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, model_validator
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_common.errors import OrganizationSuspended
from pytake_common.idempotency import IdempotencyGuard, IdempotencyKey, fingerprint, idempotent
from pytake_common.security import Principal, Worker
from pytake_conversations import outreach
from pytake_conversations.api.deps import DB, Organizations, WindowHours
from pytake_conversations.inbox import load_conversation
from pytake_conversations.outbound import LANGUAGE, TEMPLATE_NAME, Strict, TextInput
from pytake_conversations.senders import Sender
from pytake_conversations.starting import TemplateRequest, start
from pytake_conversations.views import Conversation, Message

router = APIRouter(prefix="/v1/conversations", tags=["conversations"])

MAX_PARAMETER = 1024


class TemplateParameter(Strict):
    #: literal text and/or ``{{contact.name}}``, ``{{contact.phone}}``,
    #: ``{{contact.attributes.<key>}}``
    value: str = Field(max_length=MAX_PARAMETER)
    #: used when a placeholder has no value for this contact (else the request is refused)
    default: str | None = Field(default=None, max_length=MAX_PARAMETER)


Parameter = str | TemplateParameter


class StartTemplate(Strict):
    """A template of the number's WhatsApp Business Account, filled for the contact.

    ``parameters`` fill the body's variables in order (``{{1}}``, ``{{2}}``... or the
    named ones as they first appear), ``header_parameters`` a text header's and
    ``button_parameters`` the URL buttons' with a variable, in button order.
    """

    name: str = Field(max_length=512, pattern=TEMPLATE_NAME.pattern)
    #: the template's language code, e.g. ``en_US`` or ``pt_BR``
    language: str = Field(pattern=LANGUAGE.pattern)
    parameters: list[Parameter] = Field(default_factory=list, max_length=60)
    header_parameters: list[Parameter] = Field(default_factory=list, max_length=1)
    button_parameters: list[Parameter] = Field(default_factory=list, max_length=10)


class StartConversation(Strict):
    contact_id: uuid.UUID
    #: a connected WhatsApp number of the organization
    number_id: uuid.UUID
    template: StartTemplate | None = None
    #: free-form text: only while the contact's customer-service window is open
    text: TextInput | None = None

    @model_validator(mode="after")
    def _one_message(self) -> Self:
        if (self.template is None) == (self.text is None):
            raise ValueError("give exactly one of template or text")
        return self


class Started(BaseModel):
    conversation: Conversation
    message: Message
    #: true when the contact's active conversation on the number was reused
    reused: bool


@router.post(
    "",
    status_code=201,
    response_model=Started,
    responses={
        403: {"description": "a viewer, or the organization is suspended"},
        404: {"description": "no such contact or number in this organization"},
        422: {
            "description": "`contact_blocked`, `contact_erased`, `consent_required`, "
            "`template_not_found`, `template_not_approved`, `template_parameter_missing`, "
            "`template_parameter_count`, `outside_customer_service_window`, "
            "`number_disconnected`, or invalid input"
        },
    },
)
async def start_conversation(
    body: StartConversation,
    principal: Worker,
    db: DB,
    hours: WindowHours,
    directory: Organizations,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Write to a contact first: a template (any time) or a text (inside the window).

    Reuses the contact's active conversation on the number (``reused: true``) or opens a
    new one, linked to the last closed one (``previous_conversation_id``). Answers 201
    either way: the message is always new. With ``Idempotency-Key`` a retry answers
    what the first call answered and sends nothing twice.
    """
    org = principal.organization_id
    if directory is not None and directory.is_suspended(org):
        raise OrganizationSuspended("the organization is suspended; nothing can be sent")
    fp = fingerprint("POST", "/v1/conversations", body.model_dump(mode="json"))
    async with db.transaction(organization_id=org) as session:
        guard = IdempotencyGuard(session, org, principal.user_id, idempotency_key, fp)
        answer = await idempotent(
            guard, 201, lambda: _start(session, principal, body, hours, directory)
        )
    return answer.response()


async def _start(
    session: AsyncSession,
    principal: Principal,
    body: StartConversation,
    hours: float,
    directory: object,
) -> Started:
    template = None
    if body.template is not None:
        template = TemplateRequest(
            name=body.template.name,
            language=body.template.language,
            parameters=outreach.parameters(body.template.parameters),
            header_parameters=outreach.parameters(body.template.header_parameters),
            button_parameters=outreach.parameters(body.template.button_parameters),
        )
    started = await start(
        session,
        Sender.of(principal),
        body.contact_id,
        body.number_id,
        template=template,
        text=body.text,
        hours=hours,
        directory=directory,
    )
    row = await load_conversation(session, principal.organization_id, started.conversation_id)
    return Started(
        conversation=Conversation.of(row, hours), message=started.message, reused=started.reused
    )
