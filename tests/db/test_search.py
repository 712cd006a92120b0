"""convdb search: each matching rule, isolation between customers, bad input, paging."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import threading

import psycopg2
import pytest
from click.testing import CliRunner

from convdb.cli import cli
from convdb.config import load_settings
from convdb.exceptions import SearchError
from convdb.ingest import ingest_messages, parse_message
from convdb.search import search
from convdb.search.language import current_language, reindex
from convdb.testing import scalar

T0 = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)


def event(
    n: int,
    body: str,
    *,
    customer="acme",
    channel="email",
    sender=None,
    name=None,
    subject=None,
    key=None,
    minutes=None,
) -> dict:
    email = channel == "email"
    payload = {
        "customer": {"key": customer, "name": customer.title()},
        "provider": {"kind": "email" if email else "sms", "name": "p"},
        "direction": "inbound",
        "message_id": f"{customer}-{n}",
        "from": {"address": sender or (f"person{n}@example.com" if email else f"+1415555{n:04d}")},
        "to": [{"address": f"support@{customer}.example" if email else "+12125550100"}],
        "body": body,
        "sent_at": (T0 + dt.timedelta(minutes=n if minutes is None else minutes)).isoformat(),
    }
    if name:
        payload["from"]["name"] = name
    if subject:
        payload["subject"] = subject
    if key:
        payload["conversation_key"] = key
    return payload


def ingest(db, payloads: list[dict]) -> list[int]:
    with db.atomic():
        return ingest_messages(db, [parse_message(p, "message.received") for p in payloads])


def ids(db, customer: str, text: str, **kw) -> list[int]:
    return [r.message_id for r in search(customer, text, db=db, **kw).results]


@pytest.fixture
def inbox(db):
    """Messages of acme, and of globex that would match the same queries."""
    acme = ingest(
        db,
        [
            event(
                1,
                "Where is my refund for the invoice?",
                name="Zoë Martin",
                sender="Zoe.Martin@Mail.Example.org",
                subject="Invoice 2024-118",
            ),
            event(2, "The refund arrived, thanks", name="Bob Stone", sender="bob@other.example"),
            event(3, "Chargeback filed against the refund", name="Ann Lee"),
            event(4, "Please call me back", channel="sms", sender="+1 (415) 555-2671"),
            event(
                5, "My new number is 020 7946 0958, ring me", channel="sms", sender="+14155550005"
            ),
            event(6, "Straße gesperrt; LIEFERUNG verspätet", name="Jürgen Müller"),
            event(7, "late delivery of the parcel", name="Carl Late"),
            event(8, "delivery was late again"),
        ],
    )
    ingest(
        db,
        [
            event(
                1,
                "Where is my refund for the invoice?",
                customer="globex",
                name="Zoë Martin",
                sender="zoe.martin@mail.example.org",
            ),
            event(
                4,
                "Please call me back",
                customer="globex",
                channel="sms",
                sender="+1 (415) 555-2671",
            ),
        ],
    )
    return dict(enumerate(acme, start=1))


def test_words_in_the_body_all_required(db, inbox):
    assert ids(db, "acme", "refund") == [inbox[3], inbox[2], inbox[1]]
    assert ids(db, "acme", "refund invoice") == [inbox[1]]


def test_subject_names_and_addresses_of_the_people(db, inbox):
    assert ids(db, "acme", "2024-118") == [inbox[1]]  # the conversation's topic
    assert ids(db, "acme", "martin") == [inbox[1]]  # the sender's name
    assert ids(db, "acme", "stone") == [inbox[2]]
    # the customer's own endpoint is a participant too
    assert set(ids(db, "acme", "support@acme.example")) >= {inbox[1], inbox[2]}


def test_case_and_accents_are_ignored(db, inbox):
    assert ids(db, "acme", "zoe") == [inbox[1]] == ids(db, "acme", "ZOË")
    assert ids(db, "acme", "strasse verspatet") == [inbox[6]]
    assert ids(db, "acme", "MULLER jurgen") == [inbox[6]]


def test_phrase_exclusion_and_or(db, inbox):
    assert ids(db, "acme", '"late delivery"') == [inbox[7]]
    assert ids(db, "acme", "late delivery") == [inbox[8], inbox[7]]
    assert ids(db, "acme", "refund -chargeback") == [inbox[2], inbox[1]]
    assert ids(db, "acme", 'refund -"chargeback filed"') == [inbox[2], inbox[1]]
    assert ids(db, "acme", "chargeback or stone") == [inbox[3], inbox[2]]


@pytest.mark.parametrize(
    "written",
    ["555-2671", "555 2671", "(415) 555-2671", "+1 415 555 2671", "4155552671", "415.555.2671"],
)
def test_a_phone_number_matches_by_its_digits_however_written(db, inbox, written):
    assert ids(db, "acme", written) == [inbox[4]]


def test_a_phone_number_in_a_body_and_a_dash_inside_a_number(db, inbox):
    assert ids(db, "acme", "+44 20 7946 0958") == [inbox[5]]
    assert ids(db, "acme", "7946-0958 ring") == [inbox[5]]
    assert ids(db, "acme", "ring -7946-0958") == []


def test_an_email_address_whole_or_by_domain(db, inbox):
    assert ids(db, "acme", "ZOE.MARTIN@mail.example.org") == [inbox[1]]
    assert ids(db, "acme", "@mail.example.org") == [inbox[1]]
    assert ids(db, "acme", "@example.org") == [inbox[1]]  # a parent domain
    assert ids(db, "acme", "@other.example") == [inbox[2]]
    assert ids(db, "acme", "@example.net") == []


def test_only_that_customers_messages(db, inbox):
    for text in ("refund invoice", "zoe", "555-2671", "@mail.example.org"):
        found = ids(db, "acme", text)
        assert found and set(found) <= set(inbox.values())
    globex = ids(db, "globex", "refund")
    assert len(globex) == 1 and globex[0] not in inbox.values()


def test_json_output_and_paging_through_the_cli(db_url, inbox, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.delenv("CONVDB_READ_URL", raising=False)
    runner = CliRunner()
    first = runner.invoke(cli, ["search", "acme", "refund", "--limit", "2", "--json"])
    assert first.exit_code == 0, first.output
    page = json.loads(first.output)
    assert [r["message_id"] for r in page["results"]] == [inbox[3], inbox[2]]
    assert set(page["results"][0]) == {
        "message_id",
        "conversation_id",
        "sent_at",
        "direction",
        "snippet",
    }
    assert page["results"][0]["sent_at"] == "2025-03-01T00:03:00Z"
    assert page["results"][0]["snippet"] == "Chargeback filed against the refund"
    second = runner.invoke(
        cli, ["search", "acme", "refund", "--limit", "2", "--json", "--before", page["next"]]
    )
    assert json.loads(second.output) == {
        "results": [dict(json.loads(second.output)["results"][0], message_id=inbox[1])],
        "next": None,
    }
    plain = runner.invoke(cli, ["search", "acme", "refund", "--limit", "2"])
    assert plain.exit_code == 0 and "next page: --before" in plain.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["acme", ""], "nothing to search for"),
        (["acme", "!!! ??? ..."], "nothing to search for"),
        (["acme", "-"], "nothing to search for"),
        (["acme", "x" * 10_000], "10,000 characters long"),
        (["acme", "w " * 400], "400 terms; at most 50"),
        (["nobody", "refund"], "no customer with key 'nobody'"),
        (["acme", "refund", "--before", "not-a-cursor"], "bad cursor"),
        (["acme", "refund", "--limit", "0"], "limit 0"),
        (["acme", "refund", "--limit", "1000"], "limit 1000"),
    ],
)
def test_bad_input_exits_1_with_a_message(db_url, inbox, monkeypatch, args, message):
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.delenv("CONVDB_READ_URL", raising=False)
    result = CliRunner().invoke(cli, ["search", *args])
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("text", ['"refund', 'refund"', '"""', "- - -refund", '"-"', "or or"])
def test_malformed_quotes_and_dashes_never_fail_badly(db, inbox, text):
    try:
        search("acme", text, db=db)
    except SearchError as exc:
        assert "nothing to search for" in str(exc)


def test_a_search_stopped_by_the_timeout_is_a_clear_error(db, db_url, inbox):
    blocker = psycopg2.connect(db_url)
    try:
        with blocker.cursor() as cur:
            cur.execute("LOCK TABLE convdb_search_messages IN ACCESS EXCLUSIVE MODE")
        quick = dataclasses.replace(load_settings(), search_timeout=0.2)
        with pytest.raises(SearchError, match=r"ran longer than 0\.2 s"):
            search("acme", "refund", db=db, settings=quick)
    finally:
        blocker.rollback()
        blocker.close()


def test_a_language_with_stemming_and_stop_words(db, db_url, inbox):
    english = dataclasses.replace(load_settings(), search_language="english")
    assert reindex(db_url, settings=english, echo=lambda _: None) == "english"
    assert current_language(db) == "english"
    assert ids(db, "acme", "refunds") == [inbox[3], inbox[2], inbox[1]]
    assert ids(db, "acme", "parcels") == [inbox[7]]
    with pytest.raises(SearchError, match="nothing to search for"):
        search("acme", "the and of", db=db)
    simple = dataclasses.replace(load_settings(), search_language="simple")
    reindex(db_url, settings=simple, echo=lambda _: None)
    assert ids(db, "acme", "refunds") == []
    assert ids(db, "acme", "the") != []


def test_pages_never_skip_or_repeat_while_messages_arrive(db, db_url):
    ingest(db, [event(n, f"status update {n}", key="t", minutes=10 * n) for n in range(60)])
    before = ids(db, "acme", "status update", limit=100)
    assert len(before) == 60
    stop = threading.Event()

    def arrive():
        n = 1000
        with psycopg2.connect(db_url) as conn:
            conn.autocommit = True
            while not stop.is_set() and n < 1200:
                # newer than every page, and older ones falling between pages
                minutes = 10 * 60 + n if n % 2 else 10 * (n % 60) + 5
                with conn.cursor() as cur:
                    cur.execute(
                        "INSERT INTO messages (conversation_id, provider_id, direction, "
                        "xms_body_id, sent_at) SELECT conversation_id, provider_id, 'inbound', "
                        "(SELECT id FROM xms_bodies LIMIT 1), %s FROM messages LIMIT 1",
                        (T0 + dt.timedelta(minutes=minutes),),
                    )
                    cur.execute(
                        "UPDATE messages SET email_body_id = (SELECT id FROM email_bodies "
                        "WHERE raw = 'status update 7'), xms_body_id = NULL "
                        "WHERE id = (SELECT max(id) FROM messages)"
                    )
                n += 1

    writer = threading.Thread(target=arrive)
    writer.start()
    try:
        seen, cursor_text, pages = [], None, 0
        while True:
            page = search("acme", "status update", limit=7, before=cursor_text, db=db)
            seen += [(r.sent_at, r.message_id) for r in page.results]
            pages += 1
            cursor_text = page.next
            if cursor_text is None:
                break
    finally:
        stop.set()
        writer.join()
    assert pages >= 9
    assert len(seen) == len(set(seen)), "a message came twice"
    assert seen == sorted(seen, reverse=True), "pages out of order"
    assert set(before) <= {m for _, m in seen}, "a message was skipped"


@pytest.mark.parametrize(
    ("text", "folded"),
    [
        ("Zoë ÉCOLE naïve", "zoe ecole naive"),
        ("Straße Øresund Łódź Æsir Œuvre þorn", "strasse oresund lodz aesir oeuvre thorn"),
        (
            "\uff26\uff35\uff2c\uff2c \uff57\uff49\uff44\uff54\uff48 \ufb01ne",
            "full width fine",
        ),  # full width, fi ligature
        # where unaccent's rules differ between PostgreSQL 15 and 18
        ("ª º ʰ", "a o h"),
        ("ΣΟΦΊΑ Ёлка", "σοφια елка"),
        ("が", "が"),  # kana voicing marks are kept
        ("plain ASCII Text", "plain ascii text"),
    ],
)
def test_folding_is_the_same_on_every_server(db_url, text, folded):
    assert scalar(db_url, "SELECT convdb_search_fold_v1(%s)", (text,)) == folded


def test_inside_the_callers_transaction_the_timeout_is_put_back(db, inbox):
    with db.atomic():
        db.execute_sql("SET LOCAL statement_timeout = '42s'")
        assert ids(db, "acme", "refund")
        assert db.execute_sql("SHOW statement_timeout").fetchone()[0] == "42s"
