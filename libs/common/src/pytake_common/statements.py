"""Building blocks for merged statements (several writes in one round trip)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Integer, Subquery, literal, select, union_all
from sqlalchemy.types import TypeEngine


def bound_rows(
    types: Mapping[str, TypeEngine[Any]], rows: Sequence[Mapping[str, Any]], name: str
) -> Subquery:
    """``rows`` as a subquery of bound parameters, with an ``ord`` column (their index).

    One ``SELECT`` of literals per row, ``UNION ALL``: unlike ``values(...).data(...)``
    or a multi-row ``insert().values([...])``, SQLAlchemy caches its compiled form
    (one entry per row count), so the hot paths do not compile SQL per message.
    """
    if not rows:
        raise ValueError("bound_rows needs at least one row")
    selects = [
        select(
            literal(i, Integer()).label("ord"),
            *(literal(row[c], t).label(c) for c, t in types.items()),
        )
        for i, row in enumerate(rows)
    ]
    query = selects[0] if len(selects) == 1 else union_all(*selects)
    return query.subquery(name)
