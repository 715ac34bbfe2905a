"""What a delivery names, read from its raw bytes before anything trusts them.

The signature must be checked before the body is parsed: ``json.loads`` and the
walk over a 3 MiB body cost tens of milliseconds of the event loop, and anybody
can post one. The secret that should have signed a delivery belongs to the
numbers it names, so those are found here with byte counts and one bounded
regular-expression pass (C speed, no JSON parse):

- ``"phone_number_id": "<id>"`` (the ``metadata`` of message and status changes);
- ``"id": "<id>"`` values, only when a change of a WABA-level field (template,
  quality, account) is present: its entry's ``id`` is the WhatsApp Business
  account. Other ids (wamids, media ids) only widen the candidates.

A quote inside a JSON string is escaped (``\\"``), so a customer's text cannot forge
a key; a body that spells keys oddly (``\\u0070hone_number_id``) only loses
candidates, and the exact check after the parse (every named number served by the
secret that verified) refuses it. The counts are upper bounds of the entries,
changes and numbers the parse will find, so an oversized delivery is refused here
without being parsed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pytake_whatsapp_gateway.webhooks.parsing import (
    WABA_FIELDS,
    DeliveryLimits,
    InvalidPayload,
    refuse_over,
)

_NUMBER = re.compile(rb'"phone_number_id"\s*:\s*"?([^"\\\s,}\]]{1,64})')
_ID = re.compile(rb'"id"\s*:\s*"?([^"\\\s,}\]]{1,64})')
_WABA_FIELD = re.compile(
    rb'"field"\s*:\s*"(?:' + b"|".join(f.encode() for f in sorted(WABA_FIELDS)) + rb')"'
)
#: ``"id"`` keys per element at most (message or status id, context, media, conversation).
IDS_PER_ELEMENT = 4


@dataclass(frozen=True, slots=True)
class Named:
    phone_number_ids: frozenset[str]
    #: Candidate WABA ids (every ``"id"`` value when a WABA-level change is present).
    waba_ids: frozenset[str]


def names_in(body: bytes, limits: DeliveryLimits) -> Named:
    """The phone_number_ids and WABA ids ``body`` names; 400/413 when it cannot be a
    delivery within ``limits``."""
    if body.lstrip()[:1] != b"{" or b'"entry"' not in body:
        raise InvalidPayload("the body is not a WhatsApp webhook envelope")
    refuse_over(body.count(b'"changes"'), limits.entries, "entries")
    refuse_over(body.count(b'"field"'), limits.changes, "changes")
    refuse_over(body.count(b'"phone_number_id"'), limits.changes, "changes")
    numbers = frozenset(m.decode(errors="replace") for m in _NUMBER.findall(body))
    refuse_over(len(numbers), limits.numbers, "distinct phone_number_ids")
    wabas: frozenset[str] = frozenset()
    if _WABA_FIELD.search(body):
        refuse_over(
            body.count(b'"id"'),
            limits.entries + IDS_PER_ELEMENT * limits.elements,
            "ids",
        )
        wabas = frozenset(m.decode(errors="replace") for m in _ID.findall(body))
    return Named(numbers, wabas)
