"""The search query syntax, cursors and snippets: pure functions, no database."""

from __future__ import annotations

import datetime as dt

import pytest

from convdb.exceptions import SearchError
from convdb.search import cursor
from convdb.search.query import Term, parse, phone_suffixes, to_sql
from convdb.search.snippet import WIDTH, fold, snippet


def terms(text: str, **limits) -> list[list[tuple]]:
    groups = parse(text, max_chars=limits.get("chars", 1000), max_terms=limits.get("terms", 50))
    return [[(t.kind, t.text, t.negated) for t in g] for g in groups]


def test_words_are_all_required():
    assert terms("refund  invoice") == [[("words", "refund", False), ("words", "invoice", False)]]


def test_quotes_make_a_phrase_and_an_unclosed_quote_runs_to_the_end():
    assert terms('"late delivery" box') == [
        [("words", "late delivery", False), ("words", "box", False)]
    ]
    assert terms('box "late delivery') == [
        [("words", "box", False), ("words", "late delivery", False)]
    ]
    assert terms('"') == [] and terms('""') == [] and terms('" "') == []


def test_minus_excludes_and_a_lone_minus_is_nothing():
    assert terms("refund -chargeback") == [
        [("words", "refund", False), ("words", "chargeback", True)]
    ]
    assert terms('-"not this"') == [[("words", "not this", True)]]
    assert terms("-") == [] and terms("refund - ") == [[("words", "refund", False)]]


def test_or_between_terms_means_either():
    assert terms("a b or c") == [
        [("words", "a", False), ("words", "b", False)],
        [("words", "c", False)],
    ]
    assert terms("or a or") == [[("words", "a", False)]]  # no operand: ignored
    assert terms('"or"') == [[("words", "or", False)]]  # quoted: the word


@pytest.mark.parametrize(
    ("written", "digits"),
    [
        ("+1 415 555 2671", "14155552671"),
        ("415 555 2671", "4155552671"),
        ("(415) 555-2671", "4155552671"),
        ("555-2671", "5552671"),
        ("555.2671", "5552671"),
        ("5552671", "5552671"),
        ("+1 (415) 555-2671", "14155552671"),
    ],
)
def test_a_run_of_seven_digits_is_one_phone_term(written, digits):
    (group,) = terms(f"call {written} now")
    assert group[0] == ("words", "call", False) and group[2] == ("words", "now", False)
    kind, text, negated = group[1]
    assert kind == "phone" and not negated and digits in text.split()


def test_a_dash_inside_a_phone_number_is_not_an_exclusion():
    assert [t[0] for t in terms("555-2671")[0]] == ["phone"]
    assert terms("-555-2671") == [[("phone", "5552671", True)]]
    # six digits are not a phone number: words, and the dash excludes
    assert terms("555 -267") == [[("words", "555", False), ("words", "267", True)]]


def test_phone_suffixes_include_the_national_number_and_drop_a_trunk_zero():
    assert phone_suffixes("+1 415 555 2671", "US") >= {"14155552671", "4155552671"}
    assert "2079460958" in phone_suffixes("020 7946 0958", "GB")
    assert "2079460958" in phone_suffixes("020 7946 0958", "US")  # leading zero dropped


def test_email_addresses_and_domains():
    assert terms("Jane.Doe@Example.com,") == [[("email", "jane.doe@example.com", False)]]
    assert terms("@Example.COM") == [[("domain", "example.com", False)]]
    assert terms('"jane@example.com"') == [[("email", "jane@example.com", False)]]
    # a bare domain is a word: the parser reads it as a host, like the documents
    assert terms("example.com") == [[("words", "example.com", False)]]


def test_limits_refuse_with_a_message():
    with pytest.raises(SearchError, match="10,000 characters long; at most 1,000"):
        parse("a" * 10_000, max_chars=1000, max_terms=50)
    with pytest.raises(SearchError, match="1,000 terms; at most 50"):
        parse("a " * 1000, max_chars=100_000, max_terms=50)


def test_control_characters_nul_and_lone_surrogates_are_spaces():
    assert terms("tax\udcff") == [[("words", "tax", False)]]
    assert terms("re\x00fund\ttax") == [
        [("words", "re", False), ("words", "fund", False), ("words", "tax", False)]
    ]


def test_to_sql_combines_terms_with_tsquery_operators():
    sql, params = to_sql(parse('a -"b c" or 555-2671', max_chars=100, max_terms=10))
    assert sql.count("&&") == 1 and sql.count("||") == 1 and sql.count("!!") == 1
    assert params[:2] == ["a", "b c"]
    assert params[2] == "'#1762555':*"


def test_tsquery_lexemes_are_quoted():
    sql, params = to_sql([[Term("phone", "5552671")]])
    assert sql == "((%s::tsquery))" and params == ["'#1762555':*"]


def test_cursor_round_trip_and_refusals():
    tag = cursor.scope("acme", "refund")
    when = dt.datetime(2025, 11, 5, 8, 0, 0, 123456, tzinfo=dt.UTC)
    text = cursor.encode(when, 42, tag)
    assert cursor.decode(text, tag) == (when, 42)
    for bad in ("", "AAAA", "!!", "x" * 200, text[:-2], "é" * 10):
        with pytest.raises(SearchError, match="bad cursor"):
            cursor.decode(bad, tag)
    with pytest.raises(SearchError, match="another search"):
        cursor.decode(text, cursor.scope("acme", "chargeback"))
    with pytest.raises(SearchError, match="another search"):
        cursor.decode(text, cursor.scope("globex", "refund"))


def test_fold_keeps_one_character_per_character():
    assert fold("Zoë ÉCOLE") == "zoe ecole"
    assert len(fold("Straße Øre")) == len("Straße Øre")


def test_snippet_is_a_window_at_the_first_word_found():
    body = "intro " * 60 + "the Refund was sent " + "outro " * 60
    piece = snippet(body, ["refund"])
    assert "Refund was sent" in piece and piece.startswith("…") and piece.endswith("…")
    assert len(piece) <= WIDTH + 2
    assert snippet("short   text\n", ["absent"]) == "short text"
    assert snippet(None, ["x"]) == "" and snippet("Zoë  est là", ["zoe"]) == "Zoë est là"
    assert snippet("red\x1b[31m alert\x07", ["alert"]) == "red [31m alert"
