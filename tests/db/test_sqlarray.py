"""Lists sent as one array literal read back exactly what was sent, on a real server."""

from __future__ import annotations

import datetime as dt

import psycopg2
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from convdb.sqlarray import Array, literal

# What PostgreSQL can store in text: no NUL, no lone surrogate.
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))


@pytest.fixture(scope="module")
def cur(server):
    conn = psycopg2.connect(server.url("postgres"))
    conn.autocommit = True
    with conn.cursor() as cursor:
        yield cursor
    conn.close()


def roundtrip(cur, values: list, sql_type: str) -> list:
    cur.execute(
        f"SELECT coalesce(array_agg(v ORDER BY n), '{{}}') FROM unnest(%s::{sql_type}[]) "
        "WITH ORDINALITY AS u(v, n)",
        (Array(values),),
    )
    return cur.fetchone()[0]


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.none() | TEXT, max_size=8))
@example(['say "hi"', "back\\slash", "", " ", "NULL", "null", "{a,b}", "it's", "é\u00a0ß", None])
def test_texts_come_back_unchanged(cur, values):
    assert roundtrip(cur, values, "text") == values


@settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.none() | st.integers(min_value=-(2**63), max_value=2**63 - 1), max_size=8))
def test_bigints_come_back_unchanged(cur, values):
    assert roundtrip(cur, values, "bigint") == values


def test_timestamps_and_floats(cur):
    moments = [
        dt.datetime(2025, 1, 1, 12, 30, 1, 123456, tzinfo=dt.UTC),
        dt.datetime(2025, 6, 1, 8, 0, tzinfo=dt.timezone(dt.timedelta(hours=-7))),
        None,
    ]
    back = roundtrip(cur, moments, "timestamptz")
    assert back[:2] == moments[:2] and back[2] is None  # the same instants
    floats = [0.0, 1.5, 1e-05, 2.5e300, float("inf"), None]
    assert roundtrip(cur, floats, "float8") == floats


def test_the_literal_is_one_quoted_string(cur):
    assert literal([1, 2, None]) == "{1,2,NULL}"
    assert literal(["a", None]) == '{"a",NULL}'
    cur.execute("SELECT %s", (Array(["x'); DROP TABLE y; --"]),))
    assert cur.fetchone()[0] == '{"x\'); DROP TABLE y; --"}'


@pytest.mark.parametrize("bad", [object(), dt.datetime(2025, 1, 1), True])
def test_values_without_a_safe_literal_are_refused(bad):
    with pytest.raises((TypeError, ValueError)):
        literal(["fine", bad])
