"""``convdb console`` as a real process: it refuses to start without a usable password,
serves pages, and exits 0 on SIGTERM."""

from __future__ import annotations

import httpx
import pytest

from ..console_support import PASSWORD_VAR, ConsoleProcess


@pytest.mark.slow
@pytest.mark.parametrize(
    "env, expected",
    [
        ({"CONVDB_CONSOLE_PASSWORD_REF": None}, "CONVDB_CONSOLE_PASSWORD_REF is not set"),
        ({PASSWORD_VAR: "   "}, "the variable is not set"),
        ({"CONVDB_CONSOLE_PASSWORD_REF": "file:/nonexistent/console-password"}, "cannot read"),
        ({PASSWORD_VAR: "short"}, "at least 8 characters"),
        ({"CONVDB_CONSOLE_PASSWORD_REF": "vault:x"}, "not a secret reference"),
    ],
)
def test_console_refuses_to_start_without_a_usable_password(db_url, env, expected):
    console = ConsoleProcess(db_url, env, wait=False)
    code = console.proc.wait(30)
    console._reader.join(5)
    assert code == 1, console.output
    assert expected in console.output and "Error:" in console.output
    assert "Traceback" not in console.output


@pytest.mark.slow
def test_console_refuses_an_empty_password_file(db_url, tmp_path):
    empty = tmp_path / "password"
    empty.write_text("\n")
    console = ConsoleProcess(db_url, {"CONVDB_CONSOLE_PASSWORD_REF": f"file:{empty}"}, wait=False)
    assert console.proc.wait(30) == 1
    console._reader.join(5)
    assert "the file is empty" in console.output


@pytest.mark.slow
def test_console_serves_and_exits_0_on_sigterm(db_url):
    console = ConsoleProcess(db_url)
    try:
        answer = httpx.get(console.base_url + "/queue", follow_redirects=False, timeout=10)
        assert answer.status_code == 303 and answer.headers["location"] == "/login"
        assert httpx.get(console.base_url + "/login", timeout=10).status_code == 200
    finally:
        code = console.stop()
    assert code == 0, console.output
    assert "operator and read-only logins" in console.output
    assert "GET /login 200" in console.output
