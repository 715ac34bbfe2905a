"""Building blocks for merged statements (several writes in one round trip) that are
built once per shape and executed with parameters.

Constructing a SQLAlchemy statement and computing its cache key costs more client CPU
than a round trip on loopback when the statement is big; the hot paths therefore keep
their merged statements (``functools.cache`` keyed by the shape, e.g. the row count)
and pass the values as bound parameters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Integer, Subquery, bindparam, literal, select, union_all
from sqlalchemy.types import TypeEngine


def bound_rows(types: Mapping[str, TypeEngine[Any]], count: int, name: str) -> Subquery:
    """``count`` rows of bound parameters as a subquery, with an ``ord`` column (the
    row's index); the parameters are named by :func:`row_params`.

    One ``SELECT`` per row, ``UNION ALL``: unlike ``values(...).data(...)`` or a
    multi-row ``insert().values([...])``, SQLAlchemy caches its compiled form.
    """
    if count < 1:
        raise ValueError("bound_rows needs at least one row")
    selects = [
        select(
            literal(i, Integer()).label("ord"),
            *(bindparam(f"{name}_{i}_{c}", type_=t).label(c) for c, t in types.items()),
        )
        for i in range(count)
    ]
    query = selects[0] if count == 1 else union_all(*selects)
    return query.subquery(name)


def row_params(
    types: Mapping[str, TypeEngine[Any]], rows: Sequence[Mapping[str, Any]], name: str
) -> dict[str, Any]:
    """The parameters of ``bound_rows(types, len(rows), name)`` for ``rows``."""
    return {f"{name}_{i}_{c}": row[c] for i, row in enumerate(rows) for c in types}
