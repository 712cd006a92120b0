"""Settings, URL handling and connection errors: clear, one paragraph, never the password."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from convdb.config import (
    SETTINGS,
    Settings,
    choice,
    integer,
    load_settings,
    mask_url,
    parse_settings,
    validate_url,
)
from convdb.db import open_database
from convdb.exceptions import ConfigError, DatabaseError

from ..support import run_cli

SECRET = "s3cr3t-pa55"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            f"postgresql://app:{SECRET}@db.example:5433/convdb",
            "postgresql://app:***@db.example:5433/convdb",
        ),
        (
            f"postgresql://app:{SECRET}@[::1]/convdb?sslmode=require",
            "postgresql://app:***@[::1]/convdb?sslmode=require",
        ),
        ("postgresql://app@db.example/convdb", "postgresql://app@db.example/convdb"),
        (
            "postgresql://postgres@/convdb?host=/run/pg",
            "postgresql://postgres@/convdb?host=/run/pg",
        ),
        ("postgresql://app:p%40ss@h/db", "postgresql://app:***@h/db"),
    ],
)
def test_mask_url_hides_only_the_password(url, shown):
    assert mask_url(url) == shown


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        (f"mysql://root:{SECRET}@h/db", "must be a postgresql:// URL"),
        (f"postgresql://root:{SECRET}@h:notaport/db", "malformed"),
        (f"postgresql://root:{SECRET}@h:5432", "names no database"),
        (f"postgresql://root:{SECRET}@h:5432/", "names no database"),
    ],
)
def test_malformed_urls_are_refused_without_the_password(url, fragment):
    with pytest.raises(ConfigError) as info:
        validate_url(url)
    assert fragment in str(info.value)
    assert SECRET not in str(info.value)


def test_env_file_is_read_and_real_environment_wins(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text(
        "DATABASE_URL=postgresql://fromfile@h/db\nCONVDB_PHONE_REGION=gb\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("CONVDB_PHONE_REGION", raising=False)
    settings = load_settings()
    assert settings.database_url == "postgresql://fromfile@h/db"
    assert settings.phone_region == "GB"
    monkeypatch.setenv("DATABASE_URL", "postgresql://fromenv@h/db")
    assert load_settings().database_url == "postgresql://fromenv@h/db"


def test_unreachable_host_is_a_database_error(server):
    url = f"postgresql://nobody:{SECRET}@127.0.0.1:1/x?connect_timeout=2"
    with pytest.raises(DatabaseError) as info:
        open_database(url)
    text = str(info.value)
    assert "cannot connect to postgresql://nobody:***@127.0.0.1:1/x" in text
    assert SECRET not in text


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://nobody:{SECRET}@127.0.0.1:1/x?connect_timeout=2",
        f"postgresql://nobody:{SECRET}@127.0.0.1:bad/x",
        f"mysql://nobody:{SECRET}@127.0.0.1/x",
    ],
)
@pytest.mark.parametrize(
    "command", [("convdb", "migrate"), ("convdb", "status"), ("pw_migrate", "migrate")]
)
def test_bad_urls_give_one_paragraph_and_no_traceback(url, command):
    result = run_cli(*command, env={"DATABASE_URL": url})
    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert SECRET not in output
    assert "Traceback" not in output
    assert result.stderr.startswith("Error: ")
    assert len(result.stderr.strip().splitlines()) <= 3


def test_role_that_does_not_exist_is_named_without_password(server):
    from convdb.testing import with_database

    url = with_database(server.admin_url, "postgres").replace(
        "postgresql://postgres", f"postgresql://no_such_role:{SECRET}", 1
    )
    result = run_cli("convdb", "-v", "status", env={"DATABASE_URL": url})
    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert "no_such_role" in output
    assert SECRET not in output


def test_every_bad_setting_is_named_at_once_with_what_it_accepts(tmp_path):
    env = {
        "DATABASE_URL": f"postgresql://app:{SECRET}@h:notaport/db",
        "CONVDB_PHONE_REGION": "XX",
        "CONVDB_DATA_DIR": str(tmp_path / "a-file"),
    }
    (tmp_path / "a-file").write_text("")
    with pytest.raises(ConfigError) as info:
        parse_settings(env)
    text = str(info.value)
    assert text.startswith("invalid settings:\n")
    assert "DATABASE_URL is malformed (port 'notaport'" in text
    assert "CONVDB_PHONE_REGION='XX': not one of the valid choices: AC, AD, " in text
    assert ", GB, " in text and ", US, " in text
    assert f"CONVDB_DATA_DIR='{tmp_path / 'a-file'}': " in text
    assert "Hint: Use postgresql://" in text and "nothing ran" in text
    assert SECRET not in text


def test_defaults_and_folding():
    settings = parse_settings({"CONVDB_PHONE_REGION": " gb ", "DATABASE_URL": ""})
    assert settings.database_url is None and settings.phone_region == "GB"
    assert settings.data_dir == Path(".convdb").resolve()
    assert settings.serve_max_body == 1048576 and settings.serve_tolerance == 300.0
    assert settings.public_url is None and settings.trusted_proxies is None


def test_every_setting_has_a_field_a_default_that_parses_and_a_doc():
    assert [s.field for s in SETTINGS] == [f.name for f in dataclasses.fields(Settings)]
    assert len({s.variable for s in SETTINGS}) == len(SETTINGS)
    for setting in SETTINGS:
        assert setting.doc and setting.variable.isupper()
        if setting.default is not None:
            setting.parse(setting.default)


@pytest.mark.parametrize(
    ("parse", "text", "expected"),
    [
        (integer(1, 10), " 7 ", 7),
        (integer(1, 10_000), "1_000", 1000),
        (integer(1, 10), "0", "out of range (expected 1 to 10)"),
        (integer(1, 10), "seven", "not a whole number (expected 1 to 10)"),
        (choice(["a", "b"], fold=str.lower), "B", "b"),
        (choice(["a", "b"], fold=str.lower), "c", "not one of the valid choices: a, b"),
    ],
)
def test_parsers_for_new_settings(parse, text, expected):
    if isinstance(expected, str) and " " in expected:
        with pytest.raises(ValueError, match=re.escape(expected)):
            parse(text)
    else:
        assert parse(text) == expected
