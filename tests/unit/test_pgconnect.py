"""The libpq parameters convdb adds to every connection, its reading of a failed connect, and
SQLSTATE 25006 (a connection on a standby)."""

from __future__ import annotations

import psycopg2
import pytest

from convdb.pgconnect import (
    ConnectOptions,
    connect_hint,
    connect_params,
    describe_connect_error,
    no_writable_host,
)
from convdb.pgerrors import is_connection_error, is_transient

DEFAULTS = ConnectOptions()


def test_every_connection_gets_keepalives_a_user_timeout_and_read_write():
    assert connect_params("postgresql://h1,h2/db", "write", DEFAULTS) == {
        "connect_timeout": "5",
        "keepalives": "1",
        "keepalives_idle": "30",
        "keepalives_interval": "10",
        "keepalives_count": "3",
        "tcp_user_timeout": "30000",
        "target_session_attrs": "read-write",
    }
    assert connect_params("postgresql://h/db", "read", DEFAULTS)["target_session_attrs"] == (
        "prefer-standby"
    )


def test_what_the_url_sets_wins():
    url = "postgresql://h/db?keepalives_idle=99&target_session_attrs=any&connect_timeout=2"
    params = connect_params(url, "write", DEFAULTS)
    assert not {"keepalives_idle", "target_session_attrs", "connect_timeout"} & set(params)
    assert params["keepalives_count"] == "3"


def test_settings_turn_keepalives_and_the_user_timeout_off():
    options = ConnectOptions(keepalives_idle=0, tcp_user_timeout=0)
    params = connect_params("postgresql://h/db", "write", options)
    assert params["keepalives"] == "0" and "keepalives_idle" not in params
    assert "tcp_user_timeout" not in params


def test_the_settings_are_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("CONVDB_DB_KEEPALIVES_IDLE", "45")
    monkeypatch.setenv("CONVDB_DB_TCP_USER_TIMEOUT", "2.5")
    options = ConnectOptions.from_settings()
    assert (options.keepalives_idle, options.tcp_user_timeout) == (45, 2.5)
    assert options.libpq()["tcp_user_timeout"] == "2500"


def test_hosts_that_are_all_standbys_are_named_for_what_they_are():
    url = "postgresql://u:Zq8secret-pw@127.0.0.1:5433,127.0.0.1:5434/db"
    exc = psycopg2.OperationalError(
        'connection to server at "127.0.0.1", port 5433 failed: session is read-only\n'
        'connection to server at "127.0.0.1", port 5434 failed: session is read-only\n'
    )
    assert no_writable_host(exc)
    text = describe_connect_error(url, exc)
    assert text.startswith("no host of postgresql://u:***@127.0.0.1:5433,127.0.0.1:5434/db")
    assert "target_session_attrs=read-write" in text and "Zq8" not in text
    assert "Promote a standby" in connect_hint(exc)
    refused = psycopg2.OperationalError("connection refused")
    assert not no_writable_host(refused)
    assert describe_connect_error(url, refused).startswith("cannot connect to")


@pytest.mark.parametrize("code", ["25006", "57P01", "08006"])
def test_a_write_on_a_standby_is_transient_and_discards_the_connection(code):
    error = type("E", (Exception,), {"pgcode": code})("x")
    assert is_transient(error)
    assert is_connection_error(error)


def test_other_class_25_errors_stay_permanent():
    error = type("E", (Exception,), {"pgcode": "25P02"})("in failed sql transaction")
    assert not is_connection_error(error)
