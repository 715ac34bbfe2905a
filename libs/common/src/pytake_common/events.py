"""CloudEvents 1.0 envelope (structured JSON mode) and typed event payloads.

A publisher declares each event type as a subclass of :class:`EventData` with
``event_type`` (``pytake.<service>.<aggregate>.<event>.v<N>``), ``topic``
(``pytake.<service>.<aggregate>``) and ``service`` (the publishing app, usually set
once on a per-service base class). Declaring registers it, so the catalog
(:mod:`pytake_common.event_types`) and the JSON Schemas in ``schemas/events/`` are
generated from the models and cannot drift from the code.

Both the models a publisher writes and the tolerant readers a consumer declares
derive from :class:`TenantEventData`: times are timezone-aware and in UTC, and data
naming an ``organization_id`` must belong to the event's tenant
(:meth:`CloudEvent.of` refuses to write such an event, :meth:`CloudEvent.parse_data`
to read it, which dead-letters the record).
"""

from __future__ import annotations

import builtins
import re
import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal, Self, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

EVENT_TYPE_RE = re.compile(r"^pytake\.[a-z]+\.[a-z_]+\.[a-z_]+\.v[0-9]+$")

REGISTRY: dict[str, type[EventData]] = {}
_M = TypeVar("_M", bound=BaseModel)


#: The validation context key :meth:`CloudEvent.parse_data` passes the envelope's tenant in.
TENANT_CONTEXT = "tenantid"


class TenantMismatch(ValueError):
    """Event data naming another organization than the event's tenant."""


def in_utc(value: datetime) -> datetime:
    """``value`` in UTC; a naive time (which instant is it?) is refused."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("a time without a UTC offset is ambiguous")
    return value if value.tzinfo is UTC else value.astimezone(UTC)


def same_organization(org: object, tenant: object) -> bool:
    """Whether two spellings (UUID objects or strings) name one organization."""
    if str(org) == str(tenant):
        return True
    try:
        return uuid.UUID(str(org)) == uuid.UUID(str(tenant))
    except ValueError:
        return False


class TenantEventData(BaseModel):
    """Base of event data, written (:class:`EventData`) or read (a consumer's reader).

    Every ``datetime`` field holds an aware time in UTC (naive ones are refused), and
    an ``organization_id`` field, where the model has one, must equal the tenant of
    the event the data is read from.
    """

    #: the fields that may hold a ``datetime`` (found once per class, not per validation)
    _time_fields: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        cls._time_fields = tuple(
            name for name, field in cls.model_fields.items() if _may_hold_datetime(field.annotation)
        )

    @model_validator(mode="after")
    def _utc_and_same_tenant(self, info: ValidationInfo) -> Self:
        # One validator per model (not one per field): this runs on every event read.
        for name in self._time_fields:
            value = self.__dict__[name]
            if isinstance(value, datetime):
                self.__dict__[name] = in_utc(value)
        tenant = info.context.get(TENANT_CONTEXT) if isinstance(info.context, dict) else None
        org = self.__dict__.get("organization_id")
        if tenant is not None and org is not None and not same_organization(org, tenant):
            raise TenantMismatch(f"data of organization {org} in an event of tenant {tenant}")
        return self


def _may_hold_datetime(annotation: Any) -> bool:
    """``datetime``, ``datetime | None`` and the like (not containers of them)."""
    if annotation is datetime:
        return True
    return any(arg is datetime for arg in get_args(annotation))


class EventData(TenantEventData):
    """Base of every event payload. Subclasses set ``event_type``, ``topic`` and ``service``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_type: ClassVar[str] = ""
    topic: ClassVar[str] = ""
    #: the publishing app (``source`` is ``pytake/<service>``)
    service: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.event_type:
            return
        if not EVENT_TYPE_RE.match(cls.event_type):
            raise ValueError(f"bad event type name {cls.event_type!r}")
        if not cls.event_type.startswith(cls.topic + "."):
            raise ValueError(f"{cls.event_type} must live on its aggregate topic {cls.topic}")
        if not cls.service:
            raise ValueError(f"{cls.event_type} does not say which service publishes it")
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

    @field_validator("time", mode="after")
    @classmethod
    def _time_in_utc(cls, value: datetime) -> datetime:
        # Lenient where the data base is strict: the envelope is read before we know
        # whose it is, and a producer's naive time has only ever meant UTC here.
        return value.replace(tzinfo=UTC) if value.tzinfo is None else in_utc(value)

    @classmethod
    def of(
        cls,
        payload: EventData,
        *,
        subject: uuid.UUID | str,
        tenant_id: uuid.UUID | str | None = None,
        service: str | None = None,
        event_id: uuid.UUID | None = None,
    ) -> Self:
        """The envelope of ``payload``, from its own service, for the organization it names
        (``tenant_id`` is needed only when the data names none, and must agree if it does)."""
        if not payload.event_type:
            raise ValueError("payload class has no event_type")
        org = getattr(payload, "organization_id", None)
        if tenant_id is None:
            if org is None:
                raise ValueError(f"{payload.event_type} names no organization: pass tenant_id")
            tenant_id = org
        elif org is not None and not same_organization(org, tenant_id):
            raise TenantMismatch(f"data of organization {org} in an event of tenant {tenant_id}")
        return cls(
            id=event_id or uuid.uuid4(),
            source=f"pytake/{service or payload.service}",
            type=payload.event_type,
            subject=str(subject),
            tenantid=str(tenant_id),
            data=payload.model_dump(mode="json"),
        )

    @property
    def topic(self) -> str:
        return self.type.rsplit(".", 2)[0]

    def parse_data(self, model: builtins.type[_M]) -> _M:
        """The data read as ``model``; a :class:`TenantEventData` naming another
        organization than this event's tenant fails validation (a permanent error)."""
        return model.model_validate(self.data, context={TENANT_CONTEXT: self.tenantid})

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()


def envelope_schema() -> dict[str, Any]:
    schema = CloudEvent.model_json_schema()
    schema["$id"] = "https://pytake.dev/schemas/events/cloudevent.json"
    return schema
