"""Keyword matching without regular expressions: case- and accent-insensitive, whole words.

A message is normalised once (NFKD, combining marks dropped, casefolded, every run of
characters that are not letters or digits turned into one space, padded with a space on
each side); a word or phrase is normalised the same way when its rule is compiled. A
phrase then matches when `` <phrase> `` occurs in `` <text> ``: whole words only ("ola"
matches "Olá!", never "colar"), the phrase's words adjacent and in order. One
``str.__contains__`` per phrase: linear, no backtracking, nothing a user can make slow.
"""

from __future__ import annotations

import unicodedata

#: normalised words/phrases longer than this are refused by the rule API
MAX_PHRASE = 100


def normalize(text: str) -> str:
    """``text`` as matching sees it, padded: ``" ola tudo bem "``; ``" "`` if nothing left."""
    decomposed = unicodedata.normalize("NFKD", text)
    out: list[str] = []
    space = True
    for ch in decomposed:
        if unicodedata.combining(ch):
            continue
        if ch.isalnum():
            out.append(ch)
            space = False
        elif not space:
            out.append(" ")
            space = True
    body = "".join(out).casefold().strip()
    return f" {body} " if body else " "


def phrase_key(phrase: str) -> str | None:
    """The padded form a normalised text must contain; ``None`` for a phrase with no
    letters or digits (it would match everything)."""
    padded = normalize(phrase)
    return padded if padded.strip() else None


def contains_any(normalized_text: str, keys: tuple[str, ...]) -> bool:
    return any(key in normalized_text for key in keys)
