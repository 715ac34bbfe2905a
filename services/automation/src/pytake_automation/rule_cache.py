"""Compiled rule sets in memory, per organization: no SELECT of rules per message.

A set is loaded (one query) and compiled the first time a trigger of its organization is
evaluated, then served from memory until invalidated: at once in the process that changed a
rule (after its commit), and in every other process by the rule events
(``pytake.automation.rule.*``, each carrying the organization's new rule-set ``version``),
which :class:`RuleEvents` follows without a consumer group. Least recently used
organizations are dropped past ``rule_cache_size``.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_automation.matching import RuleSet
from pytake_automation.tables import rule_sets, rules
from pytake_common import event_types as et
from pytake_common.events import CloudEvent
from pytake_common.replica import BroadcastReplica
from pytake_common.settings import ServiceSettings


class RuleCache:
    def __init__(self, size: int) -> None:
        self.size = size
        self._sets: OrderedDict[uuid.UUID, RuleSet] = OrderedDict()
        self.loads = 0  # how many times a set was read from the database (tests, metrics)

    async def rules(self, session: AsyncSession, org: uuid.UUID) -> RuleSet:
        found = self._sets.get(org)
        if found is not None:
            self._sets.move_to_end(org)
            return found
        loaded = await self._load(session, org)
        self._sets[org] = loaded
        if len(self._sets) > self.size:
            self._sets.popitem(last=False)
        return loaded

    async def _load(self, session: AsyncSession, org: uuid.UUID) -> RuleSet:
        self.loads += 1
        version = await session.scalar(
            select(rule_sets.c.version).where(rule_sets.c.organization_id == org)
        )
        rows = (
            await session.execute(
                select(rules)
                .where(rules.c.organization_id == org, rules.c.enabled.is_(True))
                .order_by(rules.c.position, rules.c.created_at, rules.c.id)
            )
        ).mappings()
        return RuleSet.of(int(version or 0), [dict(r) for r in rows])

    def invalidate(self, org: uuid.UUID, version: int | None = None) -> None:
        """Forget ``org``'s set (only if older than ``version`` when one is given)."""
        current = self._sets.get(org)
        if current is not None and (version is None or current.version < version):
            del self._sets[org]


class RuleEvents(BroadcastReplica):
    """Every process follows the rule topic and drops the sets the events outdate."""

    def __init__(self, settings: ServiceSettings, cache: RuleCache) -> None:
        super().__init__(settings, [et.AUTOMATION_RULE_TOPIC], "rule-events")
        self.cache = cache

    def handlers(self) -> dict[str, Callable[[CloudEvent], None]]:
        return {
            t: self._invalidate
            for t in (
                et.AUTOMATION_RULE_CREATED_V1,
                et.AUTOMATION_RULE_UPDATED_V1,
                et.AUTOMATION_RULE_DELETED_V1,
            )
        }

    def _invalidate(self, event: CloudEvent) -> None:
        self.cache.invalidate(uuid.UUID(event.tenantid), int(event.data.get("version", 0)))
