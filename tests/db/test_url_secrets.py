"""Library entry points never put a database password in an exception (issue 11, item 8).

The same forms as ``tests/processes/test_url_secrets.py``, through the
functions the commands call; the whole exception (message, hint, causes and
traceback text) is checked.
"""

from __future__ import annotations

import logging
import traceback

import pytest

from convdb import db as convdb_db
from convdb import migrate as migrate_lib
from convdb.config import load_settings
from convdb.exceptions import ConvdbError
from convdb.queue.worker import WorkerConfig
from convdb.queue.worker import run as run_worker

from ..support import PIECE, url_forms

WORKING = {"?password=", "?sslpassword=", "percent-encoded"}
ENTRY_POINTS = {
    "ConvdbDatabase": lambda url: convdb_db.ConvdbDatabase(url).connect(),
    "open_database": convdb_db.open_database,
    "connect": lambda url: convdb_db.connect(url, bind=False),
    "migrate.status": migrate_lib.status,
    "migrate.run": lambda url: migrate_lib.run(url, echo=lambda _: None),
    "worker.run": lambda url: run_worker(
        url, config=WorkerConfig(burst=True, progress_interval=0), echo=lambda _: None
    ),
}


@pytest.mark.parametrize("form", url_forms("postgresql://postgres@h/d"))
def test_no_exception_holds_the_password(empty_db_url, form, monkeypatch):
    url = url_forms(empty_db_url)[form]
    monkeypatch.delenv("DATABASE_URL", raising=False)
    for name, call in ENTRY_POINTS.items():
        try:
            result = call(url)
        except Exception as exc:
            assert form not in WORKING, (name, exc)
            # peewee's own connect() raises the driver's error; convdb's functions its own.
            assert isinstance(exc, ConvdbError) or name == "ConvdbDatabase", (name, exc)
            text = "".join(traceback.format_exception(exc))
            assert PIECE not in text, (name, text)
            assert PIECE not in repr(exc) and PIECE not in (getattr(exc, "hint", "") or ""), name
        else:
            assert form in WORKING, name
            if isinstance(result, convdb_db.ConvdbDatabase):
                assert PIECE not in result.database and PIECE not in result.masked_url
                result.close()


@pytest.mark.parametrize("form", ["broken %", "unencoded / ? # @", "keyword form, quoted"])
def test_settings_from_the_environment(form, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", url_forms("postgresql://postgres@h/d")[form])
    with pytest.raises(ConvdbError) as info:
        load_settings()
    assert PIECE not in "".join(traceback.format_exception(info.value))


def test_log_records_are_redacted(caplog):
    from convdb.dburl import redact_log_records, remember

    url = url_forms("postgresql://postgres@h/d")["unencoded / ? # @"]
    remember(url)
    redact_log_records()
    with caplog.at_level(logging.INFO, logger="convdb.test"):
        logging.getLogger("convdb.test").info("connecting to %s", url)
        try:
            raise RuntimeError(f"driver said: {url}")
        except RuntimeError:
            logging.getLogger("convdb.test").exception("failed")
    text = caplog.text + "".join(r.exc_text or "" for r in caplog.records)
    assert "connecting to postgresql://postgres:***@" in text
    assert "RuntimeError: driver said" in text
    assert PIECE not in text
