"""Events campaigns publishes.

Topics: ``pytake.campaigns.campaign`` (subject = campaign id) and
``pytake.campaigns.recipient`` (subject and record key = recipient id).
"""

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pytake_common.events import EventData

CAMPAIGN_TOPIC = "pytake.campaigns.campaign"
RECIPIENT_TOPIC = "pytake.campaigns.recipient"


class CampaignsEvent(EventData):
    """An event campaigns publishes."""

    service = "campaigns"


# --- campaign lifecycle ---------------------------------------------------------------


class CampaignState(CampaignsEvent):
    """A campaign's state after the change."""

    campaign_id: uuid.UUID
    organization_id: uuid.UUID
    name: str
    number_id: uuid.UUID
    template_name: str
    template_language: str
    #: draft | scheduled | running | paused | completed | cancelled
    status: str


class CampaignCreated(CampaignState):
    event_type = "pytake.campaigns.campaign.created.v1"
    topic = CAMPAIGN_TOPIC

    created_by: uuid.UUID | None


class CampaignUpdated(CampaignState):
    """A draft's name, number, template, audience or rate cap changed."""

    event_type = "pytake.campaigns.campaign.updated.v1"
    topic = CAMPAIGN_TOPIC

    updated_by: uuid.UUID | None


class CampaignDeleted(CampaignsEvent):
    event_type = "pytake.campaigns.campaign.deleted.v1"
    topic = CAMPAIGN_TOPIC

    campaign_id: uuid.UUID
    organization_id: uuid.UUID
    deleted_by: uuid.UUID | None


class CampaignStarted(CampaignState):
    """The audience was frozen into ``recipients`` recipients (sends begin at
    ``scheduled_at`` when given, else at once); ``exclusions`` counts who was left out."""

    event_type = "pytake.campaigns.campaign.started.v1"
    topic = CAMPAIGN_TOPIC

    recipients: int
    exclusions: dict[str, int]
    scheduled_at: datetime | None
    started_by: uuid.UUID | None


class CampaignPaused(CampaignState):
    """No new sends; ``reason``: ``user``, ``messaging_limit`` (the number's tier) or
    ``number_unavailable`` (the number was disconnected or removed)."""

    event_type = "pytake.campaigns.campaign.paused.v1"
    topic = CAMPAIGN_TOPIC

    reason: str
    paused_by: uuid.UUID | None


class CampaignResumed(CampaignState):
    event_type = "pytake.campaigns.campaign.resumed.v1"
    topic = CAMPAIGN_TOPIC

    resumed_by: uuid.UUID | None


class CampaignCancelled(CampaignState):
    """Stopped for good: queued recipients will never be sent to."""

    event_type = "pytake.campaigns.campaign.cancelled.v1"
    topic = CAMPAIGN_TOPIC

    cancelled_by: uuid.UUID | None
    not_sent: int


class CampaignCompleted(CampaignState):
    """Every recipient was sent to, failed or refused (later statuses still arrive)."""

    event_type = "pytake.campaigns.campaign.completed.v1"
    topic = CAMPAIGN_TOPIC

    completed_at: datetime


# --- recipients -------------------------------------------------------------------------


class TemplateRef(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    language: str
    #: MARKETING | UTILITY | AUTHENTICATION (as whatsapp-gateway's template events say)
    category: str | None


class TemplateParameters(BaseModel):
    """The template parameter spec of ``POST /v1/conversations``' ``template``, unfilled:
    each item a text or ``{value, default}``, with ``{{contact.name}}``,
    ``{{contact.phone}}`` and ``{{contact.attributes.<key>}}`` placeholders."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    parameters: list[Any] = Field(default_factory=list)
    header_parameters: list[Any] = Field(default_factory=list)
    button_parameters: list[Any] = Field(default_factory=list)


class RecipientDispatched(CampaignsEvent):
    """Send this campaign's template to this contact (conversations renders it from its own
    contact replica and sends it at most once per ``recipient_id``)."""

    event_type = "pytake.campaigns.recipient.dispatched.v1"
    topic = RECIPIENT_TOPIC

    organization_id: uuid.UUID
    campaign_id: uuid.UUID
    recipient_id: uuid.UUID
    contact_id: uuid.UUID
    number_id: uuid.UUID
    template: TemplateRef
    parameters: TemplateParameters
