"""No command prints a database password, whatever the form of DATABASE_URL (issue 11, item 8).

Each form runs through ``convdb migrate``, ``convdb status`` (also with
``-v``) and ``pw_migrate migrate``, on a fresh empty database of the test
server (the forms libpq can read connect to it and work).
"""

from __future__ import annotations

import pytest

from ..support import PIECE, run_cli, url_forms

COMMANDS = {
    "convdb migrate": ("convdb", "migrate"),
    "convdb status": ("convdb", "status"),
    "pw_migrate migrate": ("pw_migrate", "migrate"),
}
# Forms convdb accepts (the server trusts local connections, so they connect).
WORKING = {"?password=", "?sslpassword=", "percent-encoded"}


@pytest.mark.parametrize("form", url_forms("postgresql://postgres@h/d"))
def test_no_command_prints_the_password(empty_db_url, form):
    url = url_forms(empty_db_url)[form]
    for name, command in COMMANDS.items():
        for verbose in ((), ("-v",)) if name == "convdb status" else ((),):
            argv = (command[0], *verbose, *command[1:])
            result = run_cli(*argv, env={"DATABASE_URL": url}, timeout=60)
            output = result.stdout + result.stderr
            assert PIECE not in output, (name, verbose, output)
            if form in WORKING:
                assert result.returncode == 0, (name, output)
                continue
            assert result.returncode == 1, (name, verbose, output)
            if not verbose:
                assert "Traceback" not in output, (name, output)
                assert result.stderr.startswith("Error: "), (name, output)
                assert len(result.stderr.strip().splitlines()) <= 3, (name, output)


def test_database_url_option_is_masked_too(empty_db_url):
    url = url_forms(empty_db_url)["broken %"]
    result = run_cli("convdb", "status", "--database-url", url)
    assert result.returncode == 1
    assert "DATABASE_URL is malformed (invalid percent-encoded token" in result.stderr
    assert PIECE not in result.stdout + result.stderr
