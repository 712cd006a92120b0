"""Every setting is checked when a command starts: a bad one exits 1 and touches nothing."""

from __future__ import annotations

import json

import pytest

from convdb import db as convdb_db
from convdb.queue import enqueue_many
from convdb.testing import query

from ..support import run_cli, sms_events

BAD_REGION = {"CONVDB_PHONE_REGION": "XX"}


def assert_refused(result) -> None:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stderr.startswith("Error: CONVDB_PHONE_REGION='XX': not one of the valid")
    assert ", GB, " in result.stderr and ", US, " in result.stderr
    assert "nothing ran" in result.stderr


def test_bad_phone_region_stops_the_worker_before_it_claims_an_event(db_url):
    """The issue's case: E.164 numbers need no region, yet every SMS event went dead."""
    database = convdb_db.open_database(db_url)
    try:
        enqueue_many("message.received", sms_events(5), db=database)
    finally:
        database.close()
    result = run_cli(
        "convdb", "queue-worker", "--burst", env={"DATABASE_URL": db_url, **BAD_REGION}
    )
    assert_refused(result)
    assert query(db_url, "SELECT status, attempts, count(*) FROM inbound_events GROUP BY 1, 2") == [
        ("pending", 0, 5)
    ]
    assert query(db_url, "SELECT count(*) FROM messages") == [(0,)]


@pytest.mark.parametrize(
    "command", [("convdb", "migrate"), ("convdb", "status"), ("pw_migrate", "migrate")]
)
def test_bad_phone_region_stops_migrators_before_they_connect(empty_db_url, command):
    result = run_cli(*command, env={"DATABASE_URL": empty_db_url, **BAD_REGION})
    assert_refused(result)
    tables = "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
    assert query(empty_db_url, tables) == [(0,)]


def test_bad_phone_region_stops_enqueue(db_url, tmp_path):
    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps(p) + "\n" for p in sms_events(3)))
    result = run_cli(
        "convdb",
        "enqueue",
        "message.received",
        str(events),
        env={"DATABASE_URL": db_url, **BAD_REGION},
    )
    assert_refused(result)
    assert query(db_url, "SELECT count(*) FROM inbound_events") == [(0,)]


@pytest.mark.parametrize("command", [("demo",), ("status",), ("embedded-stop",)])
def test_bad_setting_starts_no_embedded_server(tmp_path, command):
    data_dir = tmp_path / "data"
    result = run_cli("convdb", *command, env={"CONVDB_DATA_DIR": str(data_dir), **BAD_REGION})
    assert_refused(result)
    assert not data_dir.exists()


def test_help_works_whatever_the_settings():
    result = run_cli("convdb", "queue-worker", "--help", env=BAD_REGION)
    assert result.returncode == 0 and "--burst" in result.stdout


def test_every_bad_setting_is_named_in_one_message(empty_db_url):
    env = {
        "DATABASE_URL": empty_db_url,
        **BAD_REGION,
        "CONVDB_SERVE_MAX_BODY": "lots",
        "CONVDB_ATTACHMENT_STORE": "s3",
        "CONVDB_TRUSTED_PROXIES": "10.0.0.0/8,proxy.local",
    }
    result = run_cli("convdb", "status", env=env)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert lines[0] == "Error: invalid settings:"
    assert [line.split("=")[0].strip() for line in lines[1:5]] == [
        "CONVDB_PHONE_REGION",
        "CONVDB_SERVE_MAX_BODY",
        "CONVDB_TRUSTED_PROXIES",
        "CONVDB_ATTACHMENT_STORE",
    ]
    assert "'proxy.local' is not an address or network" in result.stderr
