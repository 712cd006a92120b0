"""Snippets: a short piece of a message's text around the first word the query looks for.

Plain text (never markup), whitespace collapsed, at most :data:`WIDTH`
characters, with ``…`` where it was cut. Words are found case and accent
insensitively (:func:`fold`, close to the database's
``convdb_search_fold_v1``: a mismatch only moves the window).
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["WIDTH", "fold", "snippet"]

WIDTH = 160
_BEFORE = 40
# Whitespace, and control characters (a terminal would obey them), as one space.
_SPACES = re.compile(r"[\s\x00-\x1f\x7f-\x9f]+")
_SPECIAL = str.maketrans(
    {
        "ß": "ss",
        "æ": "ae",
        "œ": "oe",
        "þ": "th",
        "ø": "o",
        "đ": "d",
        "ł": "l",
        "ħ": "h",
        "ŧ": "t",
        "\u0131": "i",  # dotless i
        "ð": "d",
    }
)


class _Folded(dict):
    """Character -> its folded character, computed on first sight (for str.translate)."""

    def __missing__(self, code: int) -> str:
        ch = chr(code)
        decomposed = unicodedata.normalize("NFKD", ch.lower().translate(_SPECIAL))
        base = "".join(c for c in decomposed if not unicodedata.combining(c))
        self[code] = folded = base[:1] if base else ch
        return folded


_FOLDED = _Folded()


def fold(text: str) -> str:
    """Lowercase, without accents, one character for one (so that positions map back)."""
    return text.lower() if text.isascii() else text.translate(_FOLDED)


def snippet(text: str | None, words: list[str]) -> str:
    """A window of ``text`` at the first of ``words`` it contains (else its start)."""
    if not text:
        return ""
    flat = _SPACES.sub(" ", text).strip()
    folded = fold(flat)
    starts = [folded.find(w) for w in (fold(_SPACES.sub(" ", w).strip()) for w in words) if w]
    found = min((s for s in starts if s >= 0), default=0)
    start = max(0, found - _BEFORE) if len(flat) > WIDTH else 0
    if start and " " in flat[start:found]:
        start = flat.index(" ", start) + 1  # begin at a word
    piece = flat[start : start + WIDTH]
    if start + WIDTH < len(flat):
        piece = piece.rstrip() + "…"
    return ("…" + piece) if start else piece
