"""Meta's Graph API errors → what PyTake does and tells the agent (WHATSAPP.md's table).

``transient`` errors are retried inside the send handler with backoff; when
the attempts run out the message fails with ``retryable=True``. Terminal
errors fail at once with ``retryable=False``. Code 190 also disconnects the
number (its access token expired or was revoked).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx

TRANSIENT_CODES = frozenset({4, 80007, 130429, 131000, 131016, 131052, 131053, 131056, 131057})
TOKEN_EXPIRED = 190
#: Meta's per-user marketing limit and the customer's marketing opt-out: never retried
#: (the customer would get a marketing message they were protected from).
MARKETING_REFUSALS = frozenset({131049, 131050})

DETAILS: dict[int, str] = {
    4: "The Meta app's API call-rate limit was reached; try again shortly",
    80007: "The WhatsApp Business account's API call-rate limit was reached; try again shortly",
    130429: "The number's message throughput limit was reached; try again shortly",
    131000: "WhatsApp reported an unknown error while sending",
    131016: "WhatsApp is temporarily unavailable",
    131026: (
        "The message could not be delivered: the recipient may not be on WhatsApp, "
        "use an outdated app, or not have accepted the current terms"
    ),
    131047: (
        "More than 24 hours have passed since the customer last replied; send a template instead"
    ),
    131048: (
        "WhatsApp limits how many messages this number may send (messages reported as spam, "
        "or the messaging limit of unique customers per 24 hours reached)"
    ),
    131049: (
        "WhatsApp did not deliver this marketing message to keep the customer's engagement "
        "healthy (per-user marketing limit); do not resend it right away"
    ),
    131050: "The customer has chosen to stop receiving marketing messages from this business",
    131051: "WhatsApp does not support this message type",
    131052: "WhatsApp could not download the media of the message",
    131053: "WhatsApp could not upload the media of the message",
    131056: (
        "Too many messages were sent to this customer in a short time (pair rate limit); "
        "try again shortly"
    ),
    131057: "The WhatsApp Business account is in maintenance; try again in a minute",
    132000: "The number of template parameters does not match the template",
    132001: "The template does not exist in this language or is not approved",
    132005: "The template's text with its parameters filled in is too long",
    132007: "The template's content violates a WhatsApp policy",
    132012: "A template parameter has the wrong format",
    132015: "The template is paused because of its low quality",
    132016: "The template is disabled",
    368: "The WhatsApp account is temporarily blocked for policy violations",
    TOKEN_EXPIRED: (
        "The number's access token has expired or was revoked; "
        "reconnect the number with a new token"
    ),
}


@dataclass(frozen=True, slots=True)
class SendError:
    code: int | None
    title: str | None
    detail: str
    transient: bool
    disconnects: bool = False
    #: The request reached Meta and no answer came: Meta may have accepted it.
    ambiguous: bool = False

    @property
    def metric_label(self) -> str:
        return str(self.code) if self.code is not None else (self.title or "unknown")[:40]


def from_response(status: int, body: Any) -> SendError:
    """Map a non-2xx Graph answer (``{"error": {...}}``) to a :class:`SendError`."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        error = {}
    code = error.get("code") if isinstance(error.get("code"), int) else None
    message = error.get("message") if isinstance(error.get("message"), str) else None
    data = error.get("error_data")
    details = data.get("details") if isinstance(data, dict) else None
    title = message or (f"HTTP {status}" if code is None else None)
    if code is not None and 132000 <= code < 133000:
        detail = DETAILS.get(code, f"The template cannot be used (Meta error {code})")
        return SendError(code, title, _with(detail, details), transient=False)
    if code in MARKETING_REFUSALS:  # terminal whatever the HTTP status or is_transient say
        return SendError(code, title, _with(DETAILS[code], details), transient=False)
    if code in TRANSIENT_CODES or status == 429 or status >= 500:
        detail = DETAILS.get(code or 0, f"WhatsApp answered HTTP {status}; try again later")
        return SendError(code, title, _with(detail, details), transient=True)
    if code == TOKEN_EXPIRED or (code is None and status == 401):
        return SendError(code, title, DETAILS[TOKEN_EXPIRED], transient=False, disconnects=True)
    if code in DETAILS:
        return SendError(code, title, _with(DETAILS[code], details), transient=False)
    if error.get("is_transient") is True:
        return SendError(
            code,
            title,
            _with(message or "WhatsApp reported a temporary error", details),
            transient=True,
        )
    fallback = details or message or f"WhatsApp refused the message (HTTP {status})"
    return SendError(code, title, fallback, transient=False)


#: The request never left: safe to retry.
NOT_REACHED = SendError(
    None,
    "network error",
    "WhatsApp's API could not be reached; try again later",
    transient=True,
)
#: The request may have reached Meta and no answer came.
NO_ANSWER = SendError(
    None,
    "no answer",
    "WhatsApp's API did not answer; the message may or may not have been sent, "
    "so it was not resent to avoid a duplicate",
    transient=False,
    ambiguous=True,
)


def from_network_error(exc: httpx.HTTPError) -> SendError:
    """Connection-phase errors never reached Meta: safe to retry. Later ones are ambiguous."""
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return NOT_REACHED
    return NO_ANSWER


def from_aiohttp_error(exc: aiohttp.ClientError | TimeoutError) -> SendError:
    """:func:`from_network_error` for aiohttp: connecting (a pooled connection or a new
    one, its timeout included) never reached Meta; anything later is ambiguous."""
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
        return NOT_REACHED
    return NO_ANSWER


def _with(detail: str, meta_details: Any) -> str:
    if isinstance(meta_details, str) and meta_details and meta_details not in detail:
        return f"{detail} ({meta_details})"
    return detail
