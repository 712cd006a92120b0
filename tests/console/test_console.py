"""The operator console in process (Starlette's TestClient) on real PostgreSQL: login,
sessions, CSRF, read-only sessions, headers, escaping, the pages and their actions."""

from __future__ import annotations

import logging
import re
import time

import pytest

from convdb.console import auth
from convdb.console.web import CSP
from convdb.testing import query, scalar

from ..console_support import (
    PASSWORD,
    READONLY_PASSWORD,
    XSS,
    client,
    drain,
    hostile_messages,
    login,
    token,
)
from ..support import fill, sms_events, status_counts

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def dead_events(url: str, n: int, event_type: str = "message.received") -> None:
    """``n`` dead events, written by plain SQL (fast for big numbers)."""
    query(
        url,
        "INSERT INTO inbound_events (event_type, payload, status, attempts, last_error, "
        "processed_at, locked_by) SELECT %s, jsonb_build_object('n', g), 'dead', 5, "
        "'PayloadError: from: missing', now(), 'host:1' FROM generate_series(1, %s) g",
        (event_type, n),
    )


# --- login, sessions, rate limit ---------------------------------------------------


def test_login_sets_a_strict_http_only_cookie_and_a_wrong_password_is_refused(db_url):
    with client(db_url) as http:
        assert http.get("/queue").headers["location"] == "/login"
        wrong = login(http, "not-the-password")
        assert wrong.status_code == 401 and "Wrong password" in wrong.text
        assert http.get("/queue").status_code == 303
        answer = login(http)
        assert answer.status_code == 303 and answer.headers["location"] == "/queue"
        cookie = next(c for c in answer.headers.get_list("set-cookie") if "convdb_console=" in c)
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
        assert http.get("/queue").status_code == 200


def test_the_cookie_is_secure_behind_https(db_url):
    with client(db_url, base_url="https://console.test") as http:
        cookie = next(
            c for c in login(http).headers.get_list("set-cookie") if "convdb_console=" in c
        )
        assert "Secure" in cookie


def test_login_form_without_its_token_is_refused(db_url):
    with client(db_url) as http:
        answer = http.post("/login", data={"password": PASSWORD, "login_token": "forged"})
        assert answer.status_code == 403
        assert http.get("/queue").status_code == 303


def test_login_attempts_are_rate_limited_per_address(db_url):
    with client(db_url, login_attempts=3) as http:
        for _ in range(3):
            assert login(http, "wrong-password").status_code == 401
        limited = login(http)  # even the right password, while limited
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) > 0
        assert http.get("/queue").status_code == 303


def test_sessions_expire_when_idle_and_at_their_maximum_age():
    now = [1000.0]
    sessions = auth.Sessions(idle_seconds=60, max_seconds=300, clock=lambda: now[0])
    token, _ = sessions.create("admin")
    now[0] += 59
    assert sessions.get(token) is not None
    now[0] += 61
    assert sessions.get(token) is None  # idle too long, and forgotten
    token, _ = sessions.create("readonly")
    for _ in range(6):
        now[0] += 55
        found = sessions.get(token)
    assert found is None  # active, but past its maximum age
    assert sessions.get("made-up") is None


def test_an_expired_session_logs_out(db_url):
    with client(db_url) as http:
        login(http)
        console = http.app.state.console
        console.sessions.idle_seconds = 0.05
        time.sleep(0.1)
        assert http.get("/queue").headers["location"] == "/login"


def test_logout_ends_the_session(db_url):
    with client(db_url) as http:
        login(http)
        page = http.get("/queue")
        assert http.post("/logout", data={"csrf": token(page.text)}).status_code == 303
        assert http.get("/queue").status_code == 303


# --- headers --------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/login", "/queue", "/events/999999", "/static/console.css"])
def test_every_response_has_the_security_headers(db_url, path):
    with client(db_url) as http:
        login(http)
        answer = http.get(path)
    assert answer.headers["content-security-policy"] == CSP
    assert "script-src" not in CSP and "default-src 'none'" in CSP  # no script at all
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["referrer-policy"] == "no-referrer"
    assert answer.headers["x-content-type-options"] == "nosniff"


# --- CSRF and the read-only session ------------------------------------------------------


def test_a_stale_csrf_token_is_refused_and_changes_nothing(db_url):
    dead_events(db_url, 1)
    event_id = scalar(db_url, "SELECT id FROM inbound_events")
    with client(db_url) as http:
        login(http)
        stale = token(http.get("/queue").text)
        http.post("/logout", data={"csrf": stale})
        login(http)
        for csrf in (stale, "", "x" * 43):
            answer = http.post("/dead/act", data={"csrf": csrf, "action": "retry", "id": event_id})
            assert answer.status_code == 403, csrf
        assert "nothing" in answer.text.lower()
    assert status_counts(db_url) == {"dead": 1}


def test_a_post_from_another_origin_is_refused(db_url):
    dead_events(db_url, 1)
    with client(db_url) as http:
        login(http)
        csrf = token(http.get("/queue").text)
        answer = http.post(
            "/dead/act",
            data={"csrf": csrf, "action": "purge", "id": "1"},
            headers={"origin": "https://evil.example"},
        )
    assert answer.status_code == 403 and status_counts(db_url) == {"dead": 1}


def test_the_read_only_session_sees_pages_without_buttons_and_its_posts_are_refused(db_url):
    dead_events(db_url, 3)
    event_id = scalar(db_url, "SELECT min(id) FROM inbound_events")
    with client(db_url) as http:
        login(http, READONLY_PASSWORD)
        for path in ("/queue", "/dead", f"/events/{event_id}", "/dead/confirm?action=retry"):
            page = http.get(path)
            assert page.status_code == 200
            forms = re.findall(r'<form method="post" action="([^"]+)"', page.text)
            assert forms == ["/logout"], (path, forms)
            assert 'id="retry"' not in page.text and 'id="bulk-purge"' not in page.text
        csrf = token(page.text)
        for data in (
            {"action": "retry", "id": event_id},
            {"action": "purge", "type": "", "max_id": event_id + 10},
        ):
            assert http.post("/dead/act", data={"csrf": csrf, **data}).status_code == 403
    assert status_counts(db_url) == {"dead": 3}


# --- escaping, logs and ids ----------------------------------------------------------------


def test_everything_from_a_message_is_escaped(db_url):
    hostile_messages(db_url)
    conversation = scalar(db_url, "SELECT id FROM conversations")
    customer = scalar(db_url, "SELECT id FROM customers")
    with client(db_url) as http:
        login(http)
        pages = [http.get(p).text for p in ("/customers", f"/customers/{customer}")]
        pages.append(http.get(f"/conversations/{conversation}").text)
        pages.append(http.get("/endpoints").text)
        pages.append(http.get("/events/1").text)
    text = "\n".join(pages)
    for payload in XSS:
        assert payload not in text
    assert "&lt;img src=x onerror=alert(1)&gt;.png" in pages[2]  # a file name, as text
    assert "body &lt;/script&gt;&lt;script&gt;alert(2)&lt;/script&gt;" in pages[2]


def test_logs_hold_no_personal_data_nor_query_strings(db_url, caplog):
    hostile_messages(db_url)
    conversation = scalar(db_url, "SELECT id FROM conversations")
    with caplog.at_level(logging.INFO, logger="convdb"), client(db_url) as http:
        login(http)
        http.get(f"/conversations/{conversation}")
        http.get("/dead?type=secret.type")
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert f"GET /conversations/{conversation} 200" in logged
    assert "secret.type" not in logged and "onerror" not in logged and "body" not in logged
    assert PASSWORD not in logged


@pytest.mark.parametrize(
    "path",
    [
        "/events/999999",
        "/events/abc",
        "/events/99999999999999999999",
        "/customers/424242",
        "/conversations/424242",
        "/jobs/77",
        "/no/such/page",
    ],
)
def test_unknown_ids_give_a_404_page(db_url, path):
    with client(db_url) as http:
        login(http)
        answer = http.get(path)
    assert answer.status_code == 404
    assert "<html" in answer.text and 'id="error-message"' in answer.text


def test_a_bad_cursor_is_refused(db_url):
    with client(db_url) as http:
        login(http)
        assert http.get("/conversations/1?before=1.2.3").status_code == 400
        assert http.get("/dead?type=a%0Ab").status_code == 400


# --- pages -----------------------------------------------------------------------------------


def test_the_queue_page_counts_and_charts_the_last_hour(db_url):
    fill(db_url, sms_events(30))
    drain(db_url)
    fill(db_url, sms_events(4, prefix="later"))
    dead_events(db_url, 2, "custom.event")
    with client(db_url) as http:
        login(http)
        page = http.get("/queue").text
    assert re.search(r'id="count-pending">4<', page)
    assert re.search(r'id="count-dead">.*>2<', page)
    assert "estimate" in page
    values = [int(v) for v in re.findall(r'data-value="(\d+)"', page)]
    assert len(values) == 3 * 60 and sum(values) == 30 + 36 + 2  # done, received, dead
    assert re.search(r'data-series="done" data-total="30"', page)
    assert re.search(r'data-series="received" data-total="36"', page)
    assert re.search(r'data-series="dead" data-total="2"', page)
    assert "Event <a href=" in page  # the oldest pending event
    assert re.search(r"<td>[^<]+:\d+</td><td>30</td>", page)  # the worker that drained


def test_dead_events_page_through_by_keyset_with_their_error(db_url):
    dead_events(db_url, 120)
    with client(db_url) as http:
        login(http)
        first = http.get("/dead")
        ids = [int(i) for i in re.findall(r'<a href="/events/(\d+)">', first.text)]
        assert len(ids) == 50 and ids == sorted(ids, reverse=True)
        assert "PayloadError: from: missing" in first.text
        after = re.search(r'id="next-page" href="([^"]+)"', first.text).group(1)
        second = http.get(after.replace("&amp;", "&"))
        more = [int(i) for i in re.findall(r'<a href="/events/(\d+)">', second.text)]
        assert len(more) == 50 and max(more) < min(ids)


def test_retry_one_dead_event_after_confirmation(db_url):
    fill(db_url, sms_events(1))
    query(db_url, "UPDATE inbound_events SET status = 'dead', last_error = 'boom'")
    event_id = scalar(db_url, "SELECT id FROM inbound_events")
    with client(db_url) as http:
        login(http)
        detail = http.get(f"/events/{event_id}").text
        assert "\n  &#34;customer&#34;: {\n" in detail  # pretty-printed payload
        confirm = http.get(f"/dead/confirm?action=retry&id={event_id}")
        assert status_counts(db_url) == {"dead": 1}  # showing the confirmation changes nothing
        answer = http.post(
            "/dead/act", data={"csrf": token(confirm.text), "action": "retry", "id": event_id}
        )
        assert answer.headers["location"] == f"/events/{event_id}"
        assert "pending again" in http.get(f"/events/{event_id}").text
    assert status_counts(db_url) == {"pending": 1}
    drain(db_url)
    assert status_counts(db_url) == {"done": 1}


@pytest.mark.slow
def test_a_bulk_purge_of_100000_dead_events_runs_in_batches_in_the_background(db_url):
    dead_events(db_url, 100_000)
    dead_events(db_url, 5, "other.type")
    with client(db_url) as http:
        login(http)
        confirm = http.get("/dead/confirm?action=purge&type=message.received")
        assert "<strong>100000</strong>" in confirm.text
        max_id = re.search(r'name="max_id" value="(\d+)"', confirm.text).group(1)
        dead_events(db_url, 3)  # died after the confirmation: left alone
        started = time.monotonic()
        answer = http.post(
            "/dead/act",
            data={
                "csrf": token(confirm.text),
                "action": "purge",
                "type": "message.received",
                "max_id": max_id,
            },
        )
        assert time.monotonic() - started < 5  # the request does not wait for the purge
        job_path = answer.headers["location"]
        first = http.get(job_path).text
        assert 'http-equiv="refresh"' in first or "finished" in first
        deadline = time.monotonic() + 120
        while "finished" not in (page := http.get(job_path).text):
            assert time.monotonic() < deadline and "failed" not in page
            time.sleep(0.2)
        assert "100000 of 100000" in page
    remaining = query(db_url, "SELECT event_type, count(*) FROM inbound_events GROUP BY 1")
    assert sorted(remaining) == [("message.received", 3), ("other.type", 5)]


def test_endpoints_page_shows_the_token_hint_never_the_token(db_url):
    from convdb import db as convdb_db
    from convdb.serve import endpoints

    database = convdb_db.open_database(db_url)
    try:
        new = endpoints.add(
            database,
            "acme",
            "billing",
            kind="email",
            adapter="standard",
            secret_ref="env:X",
            known_adapters=["standard"],
        )
    finally:
        database.close()
    query(
        db_url,
        "INSERT INTO webhook_endpoint_deliveries VALUES (%s, date_trunc('hour', now()), 1, 7, "
        "now()), (%s, date_trunc('hour', now()) - interval '2 days', 1, 100, now() - "
        "interval '2 days')",
        (new.id, new.id),
    )
    token_part = new.path.rsplit("/", 1)[1]
    with client(db_url) as http:
        login(http)
        page = http.get("/endpoints").text
    assert token_part not in page and f"/hooks/{token_part[:6]}..." in page
    assert "<td>7</td>" in page  # the last day only


def test_inbox_and_conversation_page_by_keyset(db_url):
    payloads = sms_events(130, customers=1, contacts=65)
    for i, p in enumerate(payloads):
        p["sent_at"] = f"2025-11-05T10:{i // 60:02d}:{i % 60:02d}+00:00"
    fill(db_url, payloads)
    drain(db_url)
    customer = scalar(db_url, "SELECT id FROM customers")
    busiest = scalar(db_url, "SELECT id FROM conversations ORDER BY message_count DESC, id LIMIT 1")
    with client(db_url) as http:
        login(http)
        inbox = http.get(f"/customers/{customer}").text
        rows = re.findall(r'<a href="/conversations/(\d+)">', inbox)
        assert len(rows) == 50
        nxt = re.search(r'id="next-page" href="([^"]+)"', inbox).group(1)
        more = re.findall(r'<a href="/conversations/(\d+)">', http.get(nxt).text)
        assert len(more) == 15 and not set(more) & set(rows)
        page = http.get(f"/conversations/{busiest}").text
        assert "← in" in page and "→ out" in page
        sent = re.findall(r"<td>(2025-11-05 10:\d\d:\d\d) UTC</td>", page)
        assert sent == sorted(sent, reverse=True) and len(sent) >= 2


def test_search_from_the_customer_page_pages_by_keyset_and_keeps_the_words_out_of_urls(
    db_url, caplog
):
    payloads = sms_events(130, customers=2, contacts=65)
    for i, p in enumerate(payloads):
        p["sent_at"] = f"2025-11-05T10:{i // 60:02d}:{i % 60:02d}+00:00"
        p["body"] = f"refund number {i}" if i % 2 == 0 else f"hello {i}"
    fill(db_url, payloads)
    drain(db_url)
    customer = scalar(db_url, "SELECT id FROM customers WHERE key = 'cust-0'")
    mine = scalar(  # cust-0 holds the even payloads, which all say "refund"
        db_url,
        "SELECT count(*) FROM messages m JOIN conversations c ON c.id = m.conversation_id"
        " WHERE c.customer_id = %s",
        (customer,),
    )
    caplog.set_level(logging.DEBUG)
    with client(db_url) as http:
        login(http, READONLY_PASSWORD)  # a read: the read-only session may search
        page = http.get(f"/customers/{customer}").text
        assert f'action="/customers/{customer}/search"' in page
        csrf = token(page)
        first = http.post(f"/customers/{customer}/search", data={"csrf": csrf, "q": "refund"})
        assert first.status_code == 200
        links = re.findall(r'href="/conversations/(\d+)#message-(\d+)"', first.text)
        assert len(links) == 20
        found = [int(m) for _, m in links]
        while 'id="next-page"' in first.text:
            before = re.search(r'name="before" value="([^"]+)"', first.text).group(1)
            first = http.post(
                f"/customers/{customer}/search",
                data={"csrf": csrf, "q": "refund", "before": before},
            )
            found += [int(m) for m in re.findall(r'#message-(\d+)"', first.text)]
        assert len(found) == len(set(found)) == mine  # every message once, none of cust-1
        refused = http.post(f"/customers/{customer}/search", data={"csrf": csrf, "q": "+-*"})
        assert refused.status_code == 400 and "nothing to search for" in refused.text
        # the read connection is clean after a refusal
        again = http.post(f"/customers/{customer}/search", data={"csrf": csrf, "q": "hello"})
        assert again.status_code == 200 and "No message matches." in again.text
        assert (
            http.post(
                f"/customers/{customer}/search", data={"csrf": "stale", "q": "refund"}
            ).status_code
            == 403
        )
        bookmarked = http.get(f"/customers/{customer}/search", follow_redirects=False)
        assert bookmarked.status_code == 303
        assert (
            http.post("/customers/999999/search", data={"csrf": csrf, "q": "x"}).status_code == 404
        )
    assert "refund" not in caplog.text
