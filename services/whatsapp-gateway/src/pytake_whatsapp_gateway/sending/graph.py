"""Meta's Graph API: sending, mark-as-read, media, templates; answers parsed once here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from pytake_whatsapp_gateway.sending.errors import SendError, from_network_error, from_response


@dataclass(frozen=True, slots=True)
class GraphResult:
    wamid: str | None
    error: SendError | None


@dataclass(frozen=True, slots=True)
class GraphAnswer:
    """A JSON answer (``body``) or the mapped error."""

    body: dict[str, Any]
    error: SendError | None
    #: The HTTP status of Meta's answer (0 when none arrived).
    status: int = 0


class GraphClient:
    def __init__(self, client: httpx.AsyncClient, base_url: str, version: str) -> None:
        self.client = client
        self.base_url = base_url.rstrip("/")
        self.version = version

    def url(self, *parts: str) -> str:
        return "/".join([self.base_url, self.version, *(quote(p, safe="") for p in parts)])

    def messages_url(self, phone_number_id: str) -> str:
        return self.url(phone_number_id, "messages")

    async def send(
        self, phone_number_id: str, access_token: str, payload: dict[str, Any]
    ) -> GraphResult:
        answer = await self.call(
            "POST", self.messages_url(phone_number_id), access_token, json=payload
        )
        if answer.error is not None:
            return GraphResult(None, answer.error)
        wamid = _wamid(answer.body)
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

    async def mark_read(self, phone_number_id: str, access_token: str, wamid: str) -> GraphAnswer:
        body = {"messaging_product": "whatsapp", "status": "read", "message_id": wamid}
        return await self.call("POST", self.messages_url(phone_number_id), access_token, json=body)

    async def call(
        self,
        method: str,
        url: str,
        access_token: str,
        *,
        json: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> GraphAnswer:
        try:
            response = await self.client.request(
                method,
                url,
                json=json,
                params=params,
                headers={"Authorization": f"Bearer {access_token}"},
            )
        except httpx.HTTPError as exc:
            return GraphAnswer({}, from_network_error(exc))
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.is_success:
            return GraphAnswer(body if isinstance(body, dict) else {}, None, response.status_code)
        return GraphAnswer({}, from_response(response.status_code, body), response.status_code)


def _wamid(body: Any) -> str | None:
    messages = body.get("messages") if isinstance(body, dict) else None
    if isinstance(messages, list) and messages and isinstance(messages[0], dict):
        wamid = messages[0].get("id")
        return wamid if isinstance(wamid, str) and wamid else None
    return None
