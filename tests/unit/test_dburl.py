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


def test_hosts_of_a_multi_host_url_in_libpq_order():
    from convdb.dburl import hosts

    url = "postgresql://u:pw@h1:5432,[::1]:5433,%2Frun%2Fpg:5434/db?target_session_attrs=read-write"
    assert [(h.label, h.params) for h in hosts(url)] == [
        ("h1:5432", {"host": "h1", "port": "5432"}),
        ("[::1]:5433", {"host": "::1", "port": "5433"}),
        ("/run/pg:5434", {"host": "/run/pg", "port": "5434"}),
    ]
    assert [h.label for h in hosts("postgresql://h1,h2/db")] == ["h1:5432", "h2:5432"]
    assert [h.label for h in hosts("postgresql://h1,h2/db?port=6000")] == ["h1:6000", "h2:6000"]
    assert [h.label for h in hosts("postgresql:///db")] == ["local socket:5432"]
    assert mask_url(url) == url.replace(":pw@", ":***@")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql://h1,h2,h3/db?port=1,2", "has 2 ports for 3 hosts"),
        ("postgresql://h1/db?target_session_attrs=writable", "target_session_attrs='writable'"),
        ("postgresql://" + ",".join(f"h{i}" for i in range(40)) + "/db", "40 hosts, more than 32"),
    ],
)
def test_multi_host_mistakes_are_refused_before_libpq_sees_them(url, message):
    with pytest.raises(ConfigError) as caught:
        validate_url(url.replace("postgresql://", f"postgresql://u:{PIECE}pw@"), "CONVDB_READ_URL")
    assert message in str(caught.value)
    assert str(caught.value).startswith("CONVDB_READ_URL")  # the variable it came from
    assert PIECE not in str(caught.value)
