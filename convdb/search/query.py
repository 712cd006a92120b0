"""A search query's text to a tsquery expression: web search syntax, phone numbers, emails.

Pure Python, no database: :func:`parse` reads the text into groups of terms
(``or`` between groups, the terms of a group all required), :func:`to_sql`
writes them as one SQL expression of type ``tsquery`` with its parameters.
The words themselves are folded and parsed by the database, with the same
function and text search configuration as the documents
(``convdb_search_fold_v1``, ``convdb_search_v1``: migration 045), so a query
and a document never disagree on case, accents or stemming.

Syntax, as PostgreSQL's ``websearch_to_tsquery``: words are all required,
``"two words"`` is a phrase, ``-word`` (or ``-"a phrase"``) excludes, ``or``
between terms means either. Beyond it:

- a run of 7 or more digits with spaces, dashes, dots or parentheses between
  them (``+1 (415) 555-2671``, ``555-2671``) is one phone term, whose
  ``-`` are not exclusions; it matches a number that ends with those digits
  (also without a leading trunk ``0``, and the national number of an
  international one);
- ``name@example.com`` matches that address whole; ``@example.com`` (and a
  bare ``example.com``) its domain, and any address under it.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import phonenumbers

from ..dedup import normalize_email
from ..exceptions import SearchError

__all__ = ["PHONE_RUN", "Term", "parse", "to_sql"]

# The phone rule of the documents (migration 045, convdb_search_phones_v1);
# here a run may open with '+' or '(' and must not run into a letter.
PHONE_RUN = r"[0-9](?:[ .()\-]{0,3}[0-9]){6,}"
_PHONE_AT = re.compile(rf"[+(]?({PHONE_RUN})\)?(?![0-9A-Za-z])")
_WHOLE_PHONE = re.compile(rf"\s*[+(]?{PHONE_RUN}\)?\s*")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_DOMAIN = re.compile(r"@([^@\s]+\.[^@\s]+)")
# Control characters (NUL included: PostgreSQL text cannot hold it) and lone
# surrogates (no UTF-8 for them) read as spaces.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_TRAILING = ",;:!?.)'"

WORDS = "phraseto_tsquery('convdb_search_v1', convdb_search_fold_v1(%s))"
EXACT = "(quote_literal(convdb_search_fold_v1(%s)))::tsquery"


@dataclass(frozen=True)
class Term:
    """One term: ``kind`` is ``words`` (a word or a phrase), ``phone``, ``email`` or
    ``domain``; ``text`` what the term searches for (digits for a phone)."""

    kind: str
    text: str
    negated: bool = False


def parse(text: str, *, max_chars: int, max_terms: int, region: str = "US") -> list[list[Term]]:
    """Groups of terms (the query is their ``or``); raises :class:`SearchError` for a
    query over the limits. A query without any term is ``[]``."""
    if len(text) > max_chars:
        raise SearchError(
            f"the query is {len(text):,} characters long; at most {max_chars:,} are searched",
            hint="Shorten it (CONVDB_SEARCH_MAX_QUERY sets the limit).",
        )
    text = _CONTROL.sub(" ", unicodedata.normalize("NFKC", text))
    words = len(text.split())
    if words > max_terms:
        raise SearchError(
            f"the query has {words:,} terms; at most {max_terms:,} are searched",
            hint="Use fewer words (CONVDB_SEARCH_MAX_TERMS sets the limit).",
        )
    groups: list[list[Term]] = [[]]
    i, n = 0, len(text)
    either = False
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        negated = False
        if text[i] == "-":
            i += 1
            if i >= n or text[i].isspace():
                continue  # a lone '-' excludes nothing
            negated = True
        quoted = text[i] == '"'
        term, i = _term(text, i, region)
        if term is None:
            continue
        if term.kind == "words" and term.text.lower() == "or" and not (negated or quoted):
            either = bool(groups[-1])
            continue
        if either:
            groups.append([])
            either = False
        groups[-1].append(Term(term.kind, term.text, negated))
    return [g for g in groups if g]


def _term(text: str, i: int, region: str) -> tuple[Term | None, int]:
    """The term that starts at ``text[i]`` and where the next one may start."""
    if text[i] == '"':
        end = text.find('"', i + 1)
        end = len(text) if end < 0 else end
        inner = text[i + 1 : end]
        if _WHOLE_PHONE.fullmatch(inner):
            return _phone(inner, region), end + 1
        single = inner.strip()
        if single and not any(c.isspace() for c in single) and "@" in single:
            return _word(single), end + 1
        return (Term("words", inner) if inner.strip() else None), end + 1
    phone = _PHONE_AT.match(text, i)
    if phone:
        return _phone(phone.group(0), region), phone.end()
    end = i
    while end < len(text) and not text[end].isspace() and text[end] != '"':
        end += 1
    return _word(text[i:end]), end


def _word(word: str) -> Term:
    bare = word.rstrip(_TRAILING)
    domain = _DOMAIN.fullmatch(bare)
    if domain:
        try:
            return Term("domain", normalize_email("x@" + domain.group(1)).partition("@")[2])
        except ValueError:
            return Term("words", word)
    if _EMAIL.fullmatch(bare):
        try:
            return Term("email", normalize_email(bare))
        except ValueError:
            return Term("words", word)
    return Term("words", word)


def _phone(written: str, region: str) -> Term:
    return Term("phone", " ".join(sorted(phone_suffixes(written, region))))


def phone_suffixes(written: str, region: str) -> set[str]:
    """The digit strings a phone term matches as the end of a number: its digits,
    without leading zeros (a trunk prefix), and the national number when
    libphonenumber reads it as a possible number."""
    digits = re.sub(r"[^0-9]", "", written)
    found = {digits}
    if len(digits.lstrip("0")) >= 7:
        found.add(digits.lstrip("0"))
    try:
        number = phonenumbers.parse(written.strip(), region)
    except phonenumbers.NumberParseException:
        return found
    national = str(number.national_number)
    if phonenumbers.is_possible_number(number) and len(national) >= 7:
        found.add(national)
    return found


def _tsquery_lexeme(lexeme: str, prefix: bool = False) -> str:
    return "'" + lexeme.replace("\\", "\\\\").replace("'", "''") + "'" + (":*" if prefix else "")


def _term_sql(term: Term) -> tuple[str, list]:
    if term.kind == "phone":
        text = " | ".join(_tsquery_lexeme("#" + d[::-1], prefix=True) for d in term.text.split())
        sql, params = "%s::tsquery", [text]
    elif term.kind in ("email", "domain"):
        # The exact lexeme of a participant's address, or the words of a body
        # that mentions it.
        sql, params = f"({EXACT} || {WORDS})", [term.text, term.text]
    else:
        sql, params = WORDS, [term.text]
    return (f"!!{sql}", params) if term.negated else (sql, params)


def to_sql(groups: list[list[Term]]) -> tuple[str, list]:
    """One SQL expression of type tsquery for ``groups``, and its parameters."""
    ors, params = [], []
    for group in groups:
        ands = []
        for term in group:
            sql, more = _term_sql(term)
            ands.append(sql)
            params += more
        ors.append("(" + " && ".join(ands) + ")")
    return "(" + " || ".join(ors) + ")", params


def positive_words(groups: list[list[Term]]) -> list[str]:
    """The words and phrases the query looks for (not excluded), for snippets."""
    return [t.text for g in groups for t in g if not t.negated and t.kind != "phone"]
