"""Database URLs: what is accepted, what is refused, and masking of every secret form."""

from __future__ import annotations

import pytest

from convdb.dburl import mask_url, redact, secrets_in, validate_url
from convdb.exceptions import ConfigError

from ..support import PIECE, url_forms


@pytest.mark.parametrize(
    ("url", "params"),
    [
        ("postgresql://h1:5432,h2:5433/db", {"host": "h1,h2", "port": "5432,5433"}),
        ("postgresql://postgres@/convdb?host=/run/pg", {"host": "/run/pg", "user": "postgres"}),
        ("postgresql://u:p@[::1]/db?sslmode=require", {"host": "::1", "sslmode": "require"}),
        ("postgresql://u:p%2F%3F%23%40x@h/db", {"password": "p/?#@x"}),
        ("postgres://u@h/d%20b", {"dbname": "d b"}),
        ("postgresql://h/db?user=a%40b", {"user": "a@b"}),
    ],
)
def test_what_libpq_reads_is_accepted(url, params):
    got = validate_url(url)
    assert got.items() >= params.items()


@pytest.mark.parametrize(
    ("form", "shown"),
    [
        ("?password=", "postgresql://postgres@h/d?password=***"),
        ("unencoded / ? # @", "postgresql://postgres:***@h/d"),
        ("keyword form, quoted", "user=postgres dbname=d host=h password=***"),
        ("no scheme", "postgres:***@h/d"),
        ("broken %", "postgresql://postgres:***@h/d"),
        ("percent-encoded", "postgresql://postgres:***@h/d"),
    ],
)
def test_mask_url_hides_every_form(form, shown):
    assert mask_url(url_forms("postgresql://postgres@h/d")[form]) == shown


@pytest.mark.parametrize("form", url_forms("postgresql://postgres@h/d"))
def test_every_form_is_refused_or_read_without_showing_the_password(form):
    url = url_forms("postgresql://postgres@h/d")[form]
    try:
        validate_url(url)
    except ConfigError as exc:
        assert PIECE not in str(exc)
        assert str(exc).startswith("DATABASE_URL")
    assert PIECE not in mask_url(url)
    assert any(PIECE in s for s in secrets_in(url))


def test_short_passwords_are_masked_as_words_only():
    url = "postgresql://u:x@h/d?foo=1"
    assert mask_url(url) == "postgresql://u:***@h/d?foo=1"
    assert redact("Fix x; the xylophone", url) == "Fix ***; the xylophone"
    assert redact("a Zq8-long-password! b", "postgresql://u:Zq8-long-password!@h/d") == "a *** b"
