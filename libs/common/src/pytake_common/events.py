"""CloudEvents 1.0 envelope (structured JSON mode) and typed event payloads.

A publisher declares each event type as a subclass of :class:`EventData` with
``event_type`` (``pytake.<service>.<aggregate>.<event>.v<N>``) and ``topic``
(``pytake.<service>.<aggregate>``). Declaring registers it, so the catalog and
the JSON Schemas in ``schemas/events/`` are generated from the models and cannot
drift from the code.
"""

from __future__ import annotations

import builtins
import re
import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field

EVENT_TYPE_RE = re.compile(r"^pytake\.[a-z]+\.[a-z_]+\.[a-z_]+\.v[0-9]+$")

REGISTRY: dict[str, type[EventData]] = {}
_M = TypeVar("_M", bound=BaseModel)


class EventData(BaseModel):
    """Base of every event payload. Subclasses set ``event_type`` and ``topic``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_type: ClassVar[str] = ""
    topic: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.event_type:
            return
        if not EVENT_TYPE_RE.match(cls.event_type):
            raise ValueError(f"bad event type name {cls.event_type!r}")
        if not cls.event_type.startswith(cls.topic + "."):
            raise ValueError(f"{cls.event_type} must live on its aggregate topic {cls.topic}")
        if REGISTRY.get(cls.event_type, cls) is not cls:
            raise ValueError(f"event type {cls.event_type} declared twice")
        REGISTRY[cls.event_type] = cls

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        schema = cls.model_json_schema()
        schema["$id"] = f"https://pytake.dev/schemas/events/{cls.event_type}.json"
        schema["title"] = cls.event_type
        return schema


class CloudEvent(BaseModel):
    """The envelope every record on every topic carries."""

    model_config = ConfigDict(extra="allow")

    specversion: Literal["1.0"] = "1.0"
    id: uuid.UUID = Field(default_factory=uuid.uuid4)
    source: str
    type: str
    time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    subject: str
    tenantid: str
    datacontenttype: Literal["application/json"] = "application/json"
    data: dict[str, Any]

    @classmethod
    def of(
        cls,
        payload: EventData,
        *,
        service: str,
        subject: uuid.UUID | str,
        tenant_id: uuid.UUID | str,
        event_id: uuid.UUID | None = None,
    ) -> Self:
        if not payload.event_type:
            raise ValueError("payload class has no event_type")
        return cls(
            id=event_id or uuid.uuid4(),
            source=f"pytake/{service}",
            type=payload.event_type,
            subject=str(subject),
            tenantid=str(tenant_id),
            data=payload.model_dump(mode="json"),
        )

    @property
    def topic(self) -> str:
        return self.type.rsplit(".", 2)[0]

    def parse_data(self, model: builtins.type[_M]) -> _M:
        return model.model_validate(self.data)

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()


def envelope_schema() -> dict[str, Any]:
    schema = CloudEvent.model_json_schema()
    schema["$id"] = "https://pytake.dev/schemas/events/cloudevent.json"
    return schema
