"""The Graph API's send endpoint: request body and answer parsing."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from pytake_whatsapp_gateway.sending.errors import SendError, from_network_error, from_response


@dataclass(frozen=True, slots=True)
class GraphResult:
    wamid: str | None
    error: SendError | None


def text_message(
    *,
    to: str,
    body: str,
    preview_url: bool,
    context_wamid: str | None,
    message_id: uuid.UUID,
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": "text",
        "text": {"body": body, "preview_url": preview_url},
        # Echoed by Meta in this message's status webhooks.
        "biz_opaque_callback_data": str(message_id),
    }
    if context_wamid:
        payload["context"] = {"message_id": context_wamid}
    return payload


class GraphClient:
    def __init__(self, client: httpx.AsyncClient, base_url: str, version: str) -> None:
        self.client = client
        self.base_url = base_url.rstrip("/")
        self.version = version

    def messages_url(self, phone_number_id: str) -> str:
        return f"{self.base_url}/{self.version}/{quote(phone_number_id, safe='')}/messages"

    async def send(
        self, phone_number_id: str, access_token: str, payload: dict[str, Any]
    ) -> GraphResult:
        try:
            response = await self.client.post(
                self.messages_url(phone_number_id),
                json=payload,
                headers={"Authorization": f"Bearer {access_token}"},
            )
        except httpx.HTTPError as exc:
            return GraphResult(None, from_network_error(exc))
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.is_success:
            wamid = _wamid(body)
            if wamid is not None:
                return GraphResult(wamid, None)
            return GraphResult(
                None,
                SendError(
                    None,
                    "unexpected answer",
                    "WhatsApp accepted the request without a message id; not resent",
                    transient=False,
                ),
            )
        return GraphResult(None, from_response(response.status_code, body))


def _wamid(body: Any) -> str | None:
    messages = body.get("messages") if isinstance(body, dict) else None
    if isinstance(messages, list) and messages and isinstance(messages[0], dict):
        wamid = messages[0].get("id")
        return wamid if isinstance(wamid, str) and wamid else None
    return None
