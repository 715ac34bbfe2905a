"""What a delivery names, read from its raw bytes before anything trusts them.

The signature must be checked before the body is parsed: ``json.loads`` and the
walk over a 3 MiB body cost tens of milliseconds of the event loop, and anybody
can post one. The secret that should have signed a delivery belongs to the
numbers it names, so those are found here with byte counts and one bounded
regular-expression pass (C speed, no JSON parse):

- ``"phone_number_id": "<id>"`` (the ``metadata`` of message and status changes);
- the entry ids (``"id": "<id>", ["time": n,] "changes": ...``): an entry's ``id``
  is the WhatsApp Business account. At most ``limits.entries`` of them. They name
  candidate numbers (``waba_ids``) only when a change of a WABA-level field
  (template, quality, account) is present; otherwise they only help vouch for a
  delivery to a number PyTake does not serve (another number of a known account).

A quote inside a JSON string is escaped (``\\"``), so a customer's text cannot forge
a key; a body that spells keys oddly (``\\u0070hone_number_id``) only loses
candidates, and the exact check after the parse (every named number served by the
secret that verified) refuses it. The counts are upper bounds of the entries,
changes and numbers the parse will find: a body past them is marked ``over`` (never
parsed unless signed), and the candidates are collected only up to the bounds, so a
3 MiB body naming 50,000 numbers costs the same bounded scan as a small one.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

from pytake_whatsapp_gateway.webhooks.parsing import (
    WABA_FIELDS,
    DeliveryLimits,
    DeliveryTooLarge,
    InvalidPayload,
    refuse_over,
)

_NUMBER = re.compile(rb'"phone_number_id"\s*:\s*"?([^"\\\s,}\]]{1,64})')
_TIME = rb'(?:"time"\s*:\s*\d{1,20}\s*,\s*)?'
#: An entry's own id: an ``id`` key right before the entry's ``changes`` (an optional
#: ``time`` between). Starts with a literal, so the scan skips ahead at C speed.
_ENTRY_ID = re.compile(rb'"id"\s*:\s*"?([^"\\\s,}\]]{1,64})"?\s*,\s*' + _TIME + rb'"changes"\s*:')
_WABA_FIELD = re.compile(
    rb'"field"\s*:\s*"(?:' + b"|".join(f.encode() for f in sorted(WABA_FIELDS)) + rb')"'
)


@dataclass(frozen=True, slots=True)
class Named:
    phone_number_ids: frozenset[str]
    #: Candidate WABA ids (the entry ids when a WABA-level change is present).
    waba_ids: frozenset[str]
    #: The entry ids (WABA ids), whatever the changes.
    entry_ids: frozenset[str] = frozenset()
    #: Why the body cannot be within the bounds (the 413 it earns unless it is signed),
    #: else None. The candidates are then the first ones within the bounds.
    over: DeliveryTooLarge | None = None


def names_in(body: bytes, limits: DeliveryLimits) -> Named:
    """The phone_number_ids and WABA ids ``body`` names (at most ``limits.numbers`` and
    ``limits.entries``), and whether it is past ``limits``; 400 when it cannot be a
    delivery at all."""
    if body.lstrip()[:1] != b"{" or b'"entry"' not in body:
        raise InvalidPayload("the body is not a WhatsApp webhook envelope")
    over = (
        _over(body.count(b'"changes"'), limits.entries, "entries")
        or _over(body.count(b'"field"'), limits.changes, "changes")
        or _over(body.count(b'"phone_number_id"'), limits.changes, "changes")
    )
    numbers: set[str] = set()
    for match in itertools.islice(_NUMBER.finditer(body), limits.changes):
        number = match.group(1).decode(errors="replace")
        if number not in numbers and len(numbers) == limits.numbers:
            over = over or _over(limits.numbers + 1, limits.numbers, "distinct phone_number_ids")
            break
        numbers.add(number)
    entries = frozenset(
        m.group(1).decode(errors="replace")
        for m in itertools.islice(_ENTRY_ID.finditer(body), limits.entries)
    )
    wabas = entries if _WABA_FIELD.search(body) else frozenset()
    return Named(frozenset(numbers), wabas, entry_ids=entries, over=over)


def _over(count: int, limit: int, what: str) -> DeliveryTooLarge | None:
    try:
        refuse_over(count, limit, what)
    except DeliveryTooLarge as exc:
        return exc
    return None
