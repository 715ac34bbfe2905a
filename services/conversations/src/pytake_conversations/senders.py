"""Who asks for an outbound message, and how urgently whatsapp-gateway should send it."""

import uuid
from dataclasses import dataclass
from typing import Literal

from pytake_common.security import Principal

SenderType = Literal["user", "api_client", "automation", "campaign"]

INTERACTIVE = "interactive"


@dataclass(frozen=True, slots=True)
class Sender:
    """The author of an outbound message (stored as ``sent_by`` / ``sender_type``).

    ``priority`` orders a number's sends in whatsapp-gateway's queue (an agent's reply
    never waits behind a campaign); a campaign's message names its recipient, which
    is sent at most one message ever.
    """

    organization_id: uuid.UUID
    #: the user, API client or campaign id (``messages.sent_by``)
    id: uuid.UUID
    type: SenderType
    priority: str = INTERACTIVE
    campaign_id: uuid.UUID | None = None
    recipient_id: uuid.UUID | None = None

    @classmethod
    def of(cls, principal: Principal) -> "Sender":
        """A person or an API client, through the API."""
        return cls(principal.organization_id, principal.user_id, principal.kind)

    @classmethod
    def campaign(
        cls, organization_id: uuid.UUID, campaign_id: uuid.UUID, recipient_id: uuid.UUID
    ) -> "Sender":
        return cls(
            organization_id,
            campaign_id,
            "campaign",
            priority="campaign",
            campaign_id=campaign_id,
            recipient_id=recipient_id,
        )
