"""The queue's text checks (:mod:`convdb.queue.limits`) on their fast paths: a payload
is refused for a NUL exactly when it holds one, whatever backslashes surround it, and
the decoder shared by every call refuses what ``json.loads`` refuses."""

import json

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from convdb.exceptions import PayloadError
from convdb.queue.limits import Limits, decode, encode

LIMITS = Limits()
NUL_ERROR = "contains \\u0000 (NUL), which PostgreSQL cannot store"


@given(st.text(alphabet=st.sampled_from(["\x00", "\\", "u", "0", "a", '"', "é", "\U0001f600"])))
@example("\x00")
@example("\\u0000")
@example("\\\x00")
@example("a\\\\u0000\x00")
def test_a_payload_is_refused_for_a_nul_exactly_when_it_holds_one(value):
    payload = {"body": value, "nested": [{"k": value}]}
    if "\x00" in value:
        with pytest.raises(PayloadError, match=r"contains \\u0000 \(NUL\)"):
            encode(payload, LIMITS)
    else:
        assert json.loads(encode(payload, LIMITS)) == payload


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"a": NaN}', "NaN is not valid JSON"),
        ('{"a": -Infinity}', "-Infinity is not valid JSON"),
        ('{"a": 1', "not JSON (Expecting ',' delimiter at column 8)"),
        ("[1, 2]", "expected a JSON object, got list"),
        ('{"a": 1} x', "not JSON (Extra data at column 10)"),
        ('\ufeff{"a": 1}', "not JSON (Unexpected UTF-8 BOM (decode using utf-8-sig) at column 1)"),
    ],
)
def test_decode_refuses_what_the_parser_refuses_every_time(text, message):
    for _ in range(2):  # the decoder is shared: a refusal leaves it as it was
        with pytest.raises(PayloadError, match=message.replace("(", r"\(").replace(")", r"\)")):
            decode(text, LIMITS)
    assert decode('{"a": [1, {"b": null}]}', LIMITS) == {"a": [1, {"b": None}]}
