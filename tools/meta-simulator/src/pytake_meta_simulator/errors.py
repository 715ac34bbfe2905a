"""Meta's Graph API error shape and the catalogue of WhatsApp error codes.

Errors look like ``{"error": {"message", "type", "code", "error_subcode"?,
"error_data"?: {"messaging_product", "details"}, "is_transient"?, "fbtrace_id"}}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from pytake_meta_simulator.ids import new_fbtrace_id

ERROR_DOCS = "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    title: str
    details: str
    http_status: int = 400
    type: str = "OAuthException"
    is_transient: bool | None = None


#: Codes PyTake must handle (see WHATSAPP.md), with Meta's titles and default HTTP status.
CATALOGUE: dict[int, ErrorInfo] = {
    4: ErrorInfo("Application request limit reached", "Too many API calls.", is_transient=True),
    100: ErrorInfo("Invalid parameter", "Invalid parameter."),
    190: ErrorInfo(
        "Error validating access token",
        "Error validating access token: Session has expired.",
        http_status=401,
    ),
    368: ErrorInfo(
        "Temporarily blocked for policies violations",
        "The WhatsApp Business Account is restricted for violating a platform policy.",
    ),
    80007: ErrorInfo(
        "Rate limit issues",
        "The WhatsApp Business Account has reached its rate limit.",
        is_transient=True,
    ),
    130429: ErrorInfo(
        "Rate limit hit",
        "Cloud API message throughput has been reached.",
        is_transient=True,
    ),
    131000: ErrorInfo(
        "Something went wrong",
        "Message failed to send due to an unknown error.",
        http_status=500,
        is_transient=True,
    ),
    131016: ErrorInfo(
        "Service unavailable",
        "A service is temporarily unavailable.",
        http_status=503,
        is_transient=True,
    ),
    131026: ErrorInfo("Message undeliverable", "Message failed to send."),
    131047: ErrorInfo(
        "Re-engagement message",
        "Message failed to send because more than 24 hours have passed since the "
        "customer last replied to this number.",
    ),
    131048: ErrorInfo(
        "Spam rate limit hit",
        "Message failed to send because there are restrictions on how many messages can be "
        "sent from this phone number.",
    ),
    131049: ErrorInfo(
        "Meta chose not to deliver",
        "This message was not delivered to maintain healthy ecosystem engagement.",
    ),
    131050: ErrorInfo(
        "User's marketing messages opted out",
        "The recipient has chosen to stop receiving marketing messages from this business.",
    ),
    131051: ErrorInfo("Unsupported message type", "Message type is not currently supported."),
    131052: ErrorInfo("Media download error", "Unable to download the media sent by the user."),
    131053: ErrorInfo("Media upload error", "Unable to upload the media used in the message."),
    131056: ErrorInfo(
        "(Business Account, Consumer Account) pair rate limit hit",
        "Too many messages sent from this phone number to the same phone number "
        "in a short period of time.",
        is_transient=True,
    ),
    131057: ErrorInfo(
        "Account in maintenance mode",
        "Business Account is in maintenance mode (throughput upgrade).",
        is_transient=True,
    ),
    132000: ErrorInfo(
        "Number of parameters does not match the expected number of params",
        "The number of variable parameter values does not match the template.",
    ),
    132001: ErrorInfo(
        "Template name does not exist in the translation",
        "The template does not exist in the specified language.",
    ),
    132005: ErrorInfo(
        "Translated text too long",
        "Translated text is too long.",
    ),
    132007: ErrorInfo(
        "Template Format Character Policy Violated",
        "Template content violates a WhatsApp policy.",
    ),
    132012: ErrorInfo(
        "Parameter format does not match format in the created template",
        "Variable parameter values are formatted incorrectly.",
    ),
    132015: ErrorInfo("Template is Paused", "The template is paused due to low quality."),
    132016: ErrorInfo("Template is Disabled", "The template is permanently disabled."),
}


def error_info(code: int) -> ErrorInfo:
    return CATALOGUE.get(code, ErrorInfo("Simulated error", f"Simulated error {code}."))


class GraphError(Exception):
    """An error answered in Meta's Graph API shape."""

    def __init__(
        self,
        http_status: int,
        code: int,
        message: str,
        *,
        type_: str = "OAuthException",
        subcode: int | None = None,
        details: str | None = None,
        is_transient: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.code = code
        self.message = message
        self.type = type_
        self.subcode = subcode
        self.details = details
        self.is_transient = is_transient

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"message": self.message, "type": self.type, "code": self.code}
        if self.subcode is not None:
            error["error_subcode"] = self.subcode
        if self.details is not None:
            error["error_data"] = {"messaging_product": "whatsapp", "details": self.details}
        if self.is_transient is not None:
            error["is_transient"] = self.is_transient
        error["fbtrace_id"] = new_fbtrace_id()
        return {"error": error}

    @classmethod
    def invalid_parameter(cls, message: str) -> GraphError:
        return cls(400, 100, f"(#100) {message}")

    @classmethod
    def unknown_object(cls, object_id: str, method: str) -> GraphError:
        return cls(
            400,
            100,
            f"Unsupported {method} request. Object with ID '{object_id}' does not exist, "
            "cannot be loaded due to missing permissions, or does not support this operation. "
            "Please read the Graph API documentation at "
            "https://developers.facebook.com/docs/graph-api",
            type_="GraphMethodException",
            subcode=33,
        )

    @classmethod
    def bad_token(cls, message: str, subcode: int | None = None) -> GraphError:
        return cls(401, 190, message, subcode=subcode)

    @classmethod
    def injected(
        cls,
        code: int,
        *,
        http_status: int | None = None,
        message: str | None = None,
        details: str | None = None,
    ) -> GraphError:
        info = error_info(code)
        return cls(
            http_status or info.http_status,
            code,
            message or f"(#{code}) {info.title}",
            type_=info.type,
            subcode=463 if code == 190 else None,
            details=details or info.details,
            is_transient=info.is_transient,
        )


def status_error(
    code: int, *, message: str | None = None, details: str | None = None
) -> dict[str, Any]:
    """The ``errors[]`` element of a ``failed`` status webhook."""
    info = error_info(code)
    return {
        "code": code,
        "title": info.title,
        "message": message or info.title,
        "error_data": {"details": details or info.details},
        "href": ERROR_DOCS,
    }


async def graph_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, GraphError)
    headers: dict[str, str] = {}
    if exc.http_status == 401:
        headers["WWW-Authenticate"] = f'OAuth "Facebook Platform" "invalid_token" "{exc.message}"'
    return JSONResponse(exc.body(), status_code=exc.http_status, headers=headers)
