"""What an agent may send: the request body, validated, turned into WhatsApp's object."""

import re
import uuid
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_TEXT = 4096
MAX_CAPTION = 1024
MEDIA_TYPES = ("image", "audio", "video", "document", "sticker")
MessageType = Literal[
    "text",
    "image",
    "audio",
    "video",
    "document",
    "sticker",
    "template",
    "interactive",
    "reaction",
    "location",
]
TEMPLATE_NAME = re.compile(r"^[a-z0-9_]{1,512}$")
LANGUAGE = re.compile(r"^[a-z]{2,3}(_[A-Za-z]{2,4})?$")
INTERACTIVE_TYPES = frozenset(
    {"button", "list", "cta_url", "product", "product_list", "flow", "location_request_message"}
)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TextInput(Strict):
    body: str = Field(min_length=1, max_length=MAX_TEXT)
    preview_url: bool = False

    @field_validator("body")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("body must not be blank")
        return value


class MediaInput(Strict):
    #: a public HTTPS URL WhatsApp downloads, or the id of media uploaded to WhatsApp
    link: str | None = Field(default=None, max_length=2048, pattern=r"^https?://")
    media_id: str | None = Field(default=None, min_length=1, max_length=128)
    caption: str | None = Field(default=None, max_length=MAX_CAPTION)
    filename: str | None = Field(default=None, max_length=240)

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.link is None) == (self.media_id is None):
            raise ValueError("give exactly one of link or media_id")
        return self


class TemplateInput(Strict):
    name: str = Field(max_length=512)
    #: the template's language code, e.g. ``en_US`` or ``pt_BR``
    language: str
    #: WhatsApp's components (header/body/button parameters), passed through as given
    components: list[dict[str, Any]] = Field(default_factory=list, max_length=20)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not TEMPLATE_NAME.match(value):
            raise ValueError("template names are lowercase letters, digits and underscores")
        return value

    @field_validator("language")
    @classmethod
    def _language(cls, value: str) -> str:
        if not LANGUAGE.match(value):
            raise ValueError("language must be a code like en_US or pt_BR")
        return value


class InteractiveInput(BaseModel):
    """WhatsApp's interactive object (buttons, lists, ...), passed through once checked."""

    model_config = ConfigDict(extra="allow")

    type: str
    action: dict[str, Any]
    body: dict[str, Any] | None = None
    header: dict[str, Any] | None = None
    footer: dict[str, Any] | None = None

    @field_validator("type")
    @classmethod
    def _type(cls, value: str) -> str:
        if value not in INTERACTIVE_TYPES:
            raise ValueError(f"interactive type must be one of {sorted(INTERACTIVE_TYPES)}")
        return value


class ReactionInput(Strict):
    #: the message reacted to: our message id or its WhatsApp id (wamid)
    message_id: str = Field(min_length=1, max_length=256)
    #: one emoji; empty removes the reaction
    emoji: str = Field(max_length=16)


class LocationInput(Strict):
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    name: str | None = Field(default=None, max_length=1000)
    address: str | None = Field(default=None, max_length=1000)


class SendMessage(Strict):
    type: MessageType
    text: TextInput | None = None
    #: for type text: a canned response rendered with its placeholders instead of ``text``
    canned_response_id: uuid.UUID | None = None
    image: MediaInput | None = None
    audio: MediaInput | None = None
    video: MediaInput | None = None
    document: MediaInput | None = None
    sticker: MediaInput | None = None
    template: TemplateInput | None = None
    interactive: InteractiveInput | None = None
    reaction: ReactionInput | None = None
    location: LocationInput | None = None
    #: id of a message of this conversation to quote (it must have a WhatsApp id)
    reply_to: uuid.UUID | None = None

    @model_validator(mode="after")
    def _matches_type(self) -> Self:
        given = {
            name
            for name in (*MEDIA_TYPES, "text", "template", "interactive", "reaction", "location")
            if getattr(self, name) is not None
        }
        if self.type == "text":
            if (self.text is None) == (self.canned_response_id is None):
                raise ValueError("type text needs exactly one of text or canned_response_id")
            given.discard("text")
        elif self.canned_response_id is not None:
            raise ValueError("canned_response_id is only for type text")
        elif getattr(self, self.type) is None:
            raise ValueError(f"type {self.type} needs the {self.type!r} object")
        else:
            given.discard(self.type)
        if given:
            raise ValueError(f"objects {sorted(given)} do not match type {self.type}")
        media = getattr(self, self.type) if self.type in MEDIA_TYPES else None
        if isinstance(media, MediaInput):
            if media.caption is not None and self.type in ("audio", "sticker"):
                raise ValueError(f"{self.type} messages have no caption")
            if media.filename is not None and self.type != "document":
                raise ValueError("only documents have a filename")
        if self.type == "reaction" and self.reply_to is not None:
            raise ValueError("a reaction names its message in reaction.message_id")
        return self

    def whatsapp_object(self) -> dict[str, Any]:
        """Meta's inner object for the type (``reaction`` still holds our id; see caller)."""
        if self.type in MEDIA_TYPES:
            media: MediaInput = getattr(self, self.type)
            out: dict[str, Any] = (
                {"link": media.link} if media.link is not None else {"id": media.media_id}
            )
            if media.caption is not None:
                out["caption"] = media.caption
            if media.filename is not None:
                out["filename"] = media.filename
            return out
        if self.type == "template":
            assert self.template is not None
            template: dict[str, Any] = {
                "name": self.template.name,
                "language": {"code": self.template.language},
            }
            if self.template.components:
                template["components"] = self.template.components
            return template
        if self.type == "interactive":
            assert self.interactive is not None
            return self.interactive.model_dump(exclude_none=True)
        if self.type == "reaction":
            assert self.reaction is not None
            return self.reaction.model_dump()
        if self.type == "location":
            assert self.location is not None
            return self.location.model_dump(exclude_none=True)
        raise ValueError(f"type {self.type} has no payload object")

    def preview(self) -> str | None:
        """What the inbox shows as the message's text."""
        if self.type in MEDIA_TYPES:
            media: MediaInput = getattr(self, self.type)
            return media.caption
        if self.type == "template":
            assert self.template is not None
            return self.template.name
        if self.type == "reaction":
            assert self.reaction is not None
            return self.reaction.emoji
        if self.type == "location":
            assert self.location is not None
            return self.location.name
        if self.type == "interactive":
            assert self.interactive is not None
            body = self.interactive.body or {}
            text = body.get("text")
            return text if isinstance(text, str) else None
        return None


class NoteInput(Strict):
    body: str = Field(min_length=1, max_length=MAX_TEXT)

    @field_validator("body")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("body must not be blank")
        return value
