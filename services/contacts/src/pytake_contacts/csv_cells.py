"""Spreadsheet-safe CSV cells (OWASP "CSV Injection").

Every exported cell goes through :func:`cell`, whatever its column: contact fields,
tag names, attribute values and the WhatsApp profile names that arrive by webhook.
A spreadsheet treats a cell as a formula when it starts with ``=``, ``+``, ``-`` or
``@`` (tab and carriage return too, as OWASP lists them), and some trim leading
blanks or quotes first, so a cell that starts with one of them, possibly after
spaces, newlines or quote characters, is prefixed with a single quote. The writer
quotes every field (:data:`QUOTING`): a ``;`` or ``,`` inside a value can never start a
new cell in a spreadsheet that splits on the other separator.

Phones are neutralised like any other cell (``'+5511987654321``): one rule for every
column leaves nothing to forget, and the quote also keeps spreadsheets from reading
the number as arithmetic and dropping its ``+``. Imports undo the prefix
(:func:`restore`) and ignore the columns only an export has
(:data:`pytake_contacts.importer.EXPORT_ONLY`), so an exported file imports as is.
"""

from __future__ import annotations

import csv
from typing import Any, Final

TRIGGERS = frozenset("=+-@\t\r")
#: skipped before looking for a trigger: what spreadsheets may trim or unquote
LEADING = " \n\"'"
QUOTING: Final = csv.QUOTE_ALL


def _dangerous(text: str) -> bool:
    return text[:1] in TRIGGERS or text.lstrip(LEADING)[:1] in TRIGGERS


def neutralize(text: str) -> str:
    """``text`` safe to open in a spreadsheet: quote-prefixed when it could start a formula."""
    return "'" + text if text and _dangerous(text) else text


def restore(text: str) -> str:
    """The value :func:`neutralize` was given (an imported cell, possibly exported by us)."""
    if text.startswith("'") and _dangerous(text[1:]):
        return text[1:]
    return text


def cell(value: Any) -> str:
    """A value of any column as a spreadsheet-safe cell (``None`` is empty)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return neutralize(value)
    if hasattr(value, "isoformat"):  # dates and times
        return neutralize(value.isoformat())
    return neutralize(str(value))  # ids, numbers, booleans, lists


def row(values: list[Any]) -> list[str]:
    return [cell(v) for v in values]
