"""The search language: which dictionary the text search configuration stems words with.

The documents and the queries both go through the configuration
``convdb_search_v1`` (migration 045), so they always agree on it; what a
stored document holds depends on the configuration when it was written.
:func:`reindex` points the configuration at ``CONVDB_SEARCH_LANGUAGE``
(``simple``: no stemming, no stop words; else that language's Snowball
stemmer and stop words) and rewrites every document, in committed batches,
while ingestion goes on. Until it ends, documents written before it still
hold the old forms (``refunds`` where a stemmed query asks for ``refund``).
"""

from __future__ import annotations

import peewee

from ..config import SEARCH_LANGUAGES, Settings, load_settings
from ..db import closing, open_database, resolve_url
from ..exceptions import SearchError

__all__ = ["current_language", "reindex"]

# The token types of words; the others (numbers, hosts, emails, URLs) keep
# the simple dictionary whatever the language.
WORD_TOKENS = "asciiword, asciihword, hword_asciipart, word, hword, hword_part"

CURRENT = """
SELECT d.dictname FROM pg_ts_config_map m
  JOIN pg_ts_config c ON c.oid = m.mapcfg
  JOIN pg_ts_dict d ON d.oid = m.mapdict
 WHERE c.cfgname = 'convdb_search_v1' AND m.maptokentype = 1
"""


def current_language(db: peewee.Database) -> str:
    """The language the database's documents are written in (``simple``: none)."""
    row = db.execute_sql(CURRENT).fetchone()
    if row is None:
        raise SearchError(
            "this database has no search index", hint="Run `convdb migrate` (migration 045)."
        )
    return row[0].removesuffix("_stem")


def reindex(
    url: str | None = None,
    *,
    batch: int = 5000,
    settings: Settings | None = None,
    echo=print,
) -> str:
    """Apply ``CONVDB_SEARCH_LANGUAGE`` and rewrite every search document; the language."""
    settings = settings or load_settings()
    language = settings.search_language
    if language not in SEARCH_LANGUAGES:  # checked by the settings; never in SQL unchecked
        raise SearchError(f"unknown search language {language!r}")
    dictionary = "simple" if language == "simple" else f"{language}_stem"
    with closing(open_database(url or resolve_url(settings))) as db:
        before = current_language(db)
        db.execute_sql(
            f"ALTER TEXT SEARCH CONFIGURATION convdb_search_v1 "
            f"ALTER MAPPING FOR {WORD_TOKENS} WITH {dictionary}"
        )
        echo(f"search language: {before} -> {language}; rewriting every document")
        # A procedure that commits each batch: outside any transaction.
        db.execute_sql("CALL convdb_search_rebuild_v1(%s, true)", (batch,))
    return language
