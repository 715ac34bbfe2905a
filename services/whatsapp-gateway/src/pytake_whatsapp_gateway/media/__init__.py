"""Inbound media: fetched from Meta after intake, verified, stored, served to agents."""

import uuid

DOWNLOAD_PREFIX = "/v1/whatsapp/media"


def download_path(message_id: uuid.UUID) -> str:
    """The API path serving a message's media once fetched (409 media_not_ready before)."""
    return f"{DOWNLOAD_PREFIX}/{message_id}"
