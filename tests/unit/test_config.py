"""Settings, URL handling and connection errors: clear, one paragraph, never the password."""

from __future__ import annotations

import pytest

from convdb.config import load_settings, mask_url, validate_url
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
        (f"mysql://root:{SECRET}@h/db", "must start with postgresql://"),
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
