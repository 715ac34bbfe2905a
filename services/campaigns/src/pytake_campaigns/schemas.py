"""Request and response bodies of ``/v1/campaigns``."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pytake_campaigns.audience import Audience

MAX_PARAMETER = 1024
TEMPLATE_NAME = r"^[a-z0-9_]{1,512}$"
LANGUAGE = r"^[a-z]{2,3}(_[A-Za-z0-9]{2,8})?$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ParameterWithDefault(Strict):
    #: literal text and/or ``{{contact.name}}``, ``{{contact.phone}}``,
    #: ``{{contact.attributes.<key>}}``
    value: str = Field(max_length=MAX_PARAMETER)
    #: used when a placeholder has no value for a contact (else that recipient fails)
    default: str | None = Field(default=None, max_length=MAX_PARAMETER)


Parameter = str | ParameterWithDefault


class CampaignTemplate(Strict):
    """An approved template of the number's WhatsApp Business Account and its parameters,
    exactly as ``POST /v1/conversations`` takes them (filled per recipient)."""

    name: str = Field(max_length=512, pattern=TEMPLATE_NAME)
    language: str = Field(pattern=LANGUAGE)
    parameters: list[Parameter] = Field(default_factory=list, max_length=60)
    header_parameters: list[Parameter] = Field(default_factory=list, max_length=1)
    button_parameters: list[Parameter] = Field(default_factory=list, max_length=10)

    def spec(self) -> dict[str, list[Any]]:
        dumped = self.model_dump(mode="json", exclude={"name", "language"})
        return {k: list(v) for k, v in dumped.items()}


class CampaignCreate(Strict):
    name: str = Field(min_length=1, max_length=200)
    number_id: uuid.UUID
    template: CampaignTemplate
    audience: Audience
    #: sends per second at most (below the number's throughput); null: the number's
    rate_per_second: int | None = Field(default=None, ge=1, le=1000)


class CampaignPatch(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    number_id: uuid.UUID | None = None
    template: CampaignTemplate | None = None
    audience: Audience | None = None
    rate_per_second: int | None = Field(default=None, ge=1, le=1000)


class StartCampaign(Strict):
    #: when sends begin (null: now); the audience is frozen when start is called
    scheduled_at: datetime | None = None


class Campaign(BaseModel):
    id: uuid.UUID
    name: str
    number_id: uuid.UUID
    template: CampaignTemplate
    template_category: str | None
    audience: Audience
    rate_per_second: int | None
    #: draft | scheduled | running | paused | completed | cancelled
    status: str
    #: why a paused campaign is paused: ``user``, ``messaging_limit`` or ``number_unavailable``
    pause_reason: str | None
    scheduled_at: datetime | None
    started_at: datetime | None
    paused_at: datetime | None
    finished_at: datetime | None
    recipients_total: int
    #: contacts of the audience left out at start, by reason
    exclusions: dict[str, int]
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime


class CampaignPage(BaseModel):
    items: list[Campaign]
    next_cursor: str | None


class Recipient(BaseModel):
    id: uuid.UUID
    contact_id: uuid.UUID
    #: queued | dispatched | accepted | sent | delivered | read | replied | failed | cancelled
    status: str
    message_id: uuid.UUID | None
    conversation_id: uuid.UUID | None
    #: Meta's error code (e.g. ``131049``) or conversations' refusal code
    error_code: str | None
    error_detail: str | None
    pricing_category: str | None
    billable: bool | None
    cost: float | None
    dispatched_at: datetime | None
    sent_at: datetime | None
    delivered_at: datetime | None
    read_at: datetime | None
    replied_at: datetime | None
    failed_at: datetime | None
    created_at: datetime


class RecipientPage(BaseModel):
    items: list[Recipient]
    next_cursor: str | None


class Stats(BaseModel):
    campaign_id: uuid.UUID
    status: str
    pause_reason: str | None
    recipients_total: int
    #: recipients per status (every status present, 0 when none)
    by_status: dict[str, int]
    #: contacts of the audience left out at start, by reason
    exclusions: dict[str, int]
    #: failed recipients per error code
    failures: dict[str, int]
    #: recipients who answered
    replied: int
    #: cost per pricing category from the status webhooks' ``pricing``, and in total
    cost_by_category: dict[str, float]
    cost_total: float
    currency: str
