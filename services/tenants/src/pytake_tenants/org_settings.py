"""An organization's profile and settings, validated whole on every write.

A PATCH merges the given top-level keys into the stored document and the
merged result is validated again, so a stored document is always valid.
"""

from __future__ import annotations

import itertools
import re
from datetime import date, time
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    ValidationError,
    field_validator,
    model_validator,
)

from pytake_common.errors import InvalidInput

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
#: BCP 47 subset used by WhatsApp templates: ``pt``, ``pt_BR``, ``pt-BR``, ``es-419``.
LANGUAGE_RE = re.compile(r"^[a-z]{2,3}([_-]([A-Z]{2}|[0-9]{3}))?$")
MAX_MESSAGE = 1024
MAX_AUTO_CLOSE_HOURS = 24 * 90
MAX_HOLIDAYS = 366
_ZONES = frozenset(available_timezones())


def check_timezone(value: str | None) -> str | None:
    if value is None:
        return None
    if value not in _ZONES:
        raise ValueError("timezone must be an IANA time zone name, e.g. America/Sao_Paulo")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError("timezone is not available") from exc
    return value


def check_language(value: str | None) -> str | None:
    if value is not None and not LANGUAGE_RE.match(value):
        raise ValueError("language must be a language tag such as en, pt_BR or es-419")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Interval(_Strict):
    """Open from ``start`` to ``end`` (local time of the organization's timezone)."""

    start: time
    end: time

    @model_validator(mode="after")
    def _ordered(self) -> Interval:
        if self.end <= self.start:
            raise ValueError("business hours must end after they start")
        return self


DayHours = Annotated[list[Interval], Field(max_length=6)]


class BusinessHours(_Strict):
    """Opening intervals per weekday; an empty list (or a missing day) means closed."""

    monday: DayHours = []
    tuesday: DayHours = []
    wednesday: DayHours = []
    thursday: DayHours = []
    friday: DayHours = []
    saturday: DayHours = []
    sunday: DayHours = []

    @model_validator(mode="after")
    def _no_overlap(self) -> BusinessHours:
        for day in WEEKDAYS:
            spans = sorted(getattr(self, day), key=lambda i: i.start)
            for before, after in itertools.pairwise(spans):
                if after.start < before.end:
                    raise ValueError(f"{day}: business hours overlap")
            setattr(self, day, spans)
        return self


class Holiday(_Strict):
    """A local day the organization is closed all day, whatever its weekly hours say."""

    date: date
    name: str | None = Field(default=None, max_length=100)


Holidays = Annotated[list[Holiday], Field(max_length=MAX_HOLIDAYS)]


def _distinct_days(value: list[Holiday] | None) -> list[Holiday] | None:
    if value is None:
        return None
    days = [h.date for h in value]
    if len(set(days)) != len(days):
        raise ValueError("a holiday date is listed twice")
    return sorted(value, key=lambda h: h.date)


class OrganizationSettings(_Strict):
    timezone: str = "UTC"
    language: str = "en"
    business_hours: BusinessHours = BusinessHours()
    #: closed days (local dates), e.g. public holidays; automation's away message applies
    holidays: Holidays = []
    welcome_message: str | None = Field(default=None, max_length=MAX_MESSAGE)
    away_message: str | None = Field(default=None, max_length=MAX_MESSAGE)
    #: Idle open conversations are resolved after this many hours; null = never.
    auto_close_after_hours: int | None = Field(default=None, ge=1, le=MAX_AUTO_CLOSE_HOURS)

    _timezone = field_validator("timezone")(check_timezone)
    _language = field_validator("language")(check_language)
    _holidays = field_validator("holidays")(_distinct_days)

    @field_validator("welcome_message", "away_message")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None


class OrganizationSettingsPatch(_Strict):
    """Top-level keys to replace; each is validated with the merged document."""

    timezone: str | None = None
    language: str | None = None
    business_hours: BusinessHours | None = None
    holidays: Holidays | None = None
    welcome_message: str | None = Field(default=None, max_length=MAX_MESSAGE)
    away_message: str | None = Field(default=None, max_length=MAX_MESSAGE)
    auto_close_after_hours: int | None = Field(default=None, ge=1, le=MAX_AUTO_CLOSE_HOURS)

    _timezone = field_validator("timezone")(check_timezone)
    _language = field_validator("language")(check_language)
    _holidays = field_validator("holidays")(_distinct_days)


Industry = Literal[
    "retail", "services", "health", "education", "finance", "technology", "government", "other"
]


class Profile(_Strict):
    legal_name: str | None = Field(default=None, max_length=200)
    tax_id: str | None = Field(default=None, max_length=40)
    website: HttpUrl | None = None
    support_email: str | None = Field(
        default=None, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
    )
    phone: str | None = Field(default=None, max_length=32, pattern=r"^\+?[0-9 ()-]{4,31}$")
    country: str | None = Field(default=None, pattern=r"^[A-Z]{2}$", description="ISO 3166-1")
    industry: Industry | None = None
    logo_url: HttpUrl | None = None


def merge_settings(current: dict[str, Any], patch: OrganizationSettingsPatch) -> dict[str, Any]:
    merged = {**current, **patch.model_dump(mode="json", exclude_unset=True)}
    return _validated(OrganizationSettings, merged)


def merge_profile(current: dict[str, Any], patch: Profile) -> dict[str, Any]:
    merged = {**current, **patch.model_dump(mode="json", exclude_unset=True)}
    return _validated(Profile, merged)


def _validated(model: type[BaseModel], document: dict[str, Any]) -> dict[str, Any]:
    try:
        return model.model_validate(document).model_dump(mode="json")
    except ValidationError as exc:
        errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        raise InvalidInput("settings failed validation", errors=errors) from exc


def default_settings() -> dict[str, Any]:
    return OrganizationSettings().model_dump(mode="json")
