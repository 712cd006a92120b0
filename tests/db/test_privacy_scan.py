"""After an erasure, a generic scan finds no trace of the person, but in what another
customer's data still uses; that customer keeps all of its data and counters.

A hypothesis test over random small histories: several customers sharing
addresses, bodies and attachment bytes, a random person erased. The scan is
catalog-driven (every text-like column of every table, so a plugin's or a
future table is covered) plus every file of the attachment store.
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convdb.attachments import AttachmentSettings, LocalStore
from convdb.privacy import erase_contact

from ..privacy_support import event, ingest, owners, scan, scan_files
from ..support import ACTUAL, STORED

CUSTOMERS = 3
PEOPLE = 3

message = st.tuples(
    st.integers(0, CUSTOMERS - 1),  # customer
    st.integers(0, PEOPLE - 1),  # the person
    st.sampled_from(["inbound", "outbound"]),
    st.one_of(st.none(), st.integers(0, PEOPLE - 1)),  # a second person in the conversation
    st.booleans(),  # with the person's attachment
    st.one_of(st.none(), st.integers(0, 2)),  # a conversation key
    st.sampled_from(["done", "pending", "dead", None]),  # its queue event (None: purged)
)


def _customer_data(db, customer_id: int) -> dict:
    """Everything of one customer that an erasure of another must not change."""
    rows = db.execute_sql(
        """
SELECT m.provider_message_id, m.direction, coalesce(eb.raw, xb.raw),
       (SELECT array_agg(u.raw ORDER BY u.raw) FROM message_attachments ma
          JOIN attachments a ON a.id = ma.attachment_id
          JOIN attachment_urls u ON u.id = a.url_id WHERE ma.message_id = m.id),
       (SELECT array_agg(coalesce(ea.lowered, pn.e164)) FROM contact_addresses ca
          LEFT JOIN email_addresses ea ON ea.id = ca.email_address_id
          LEFT JOIN phone_numbers pn ON pn.id = ca.phone_number_id
         WHERE ca.contact_id = m.sender_id),
       c.message_count, c.participant_count, c.last_message_at
  FROM messages m JOIN conversations c ON c.id = m.conversation_id
  LEFT JOIN email_bodies eb ON eb.id = m.email_body_id
  LEFT JOIN xms_bodies xb ON xb.id = m.xms_body_id
 WHERE c.customer_id = %s ORDER BY 1""",
        (customer_id,),
    ).fetchall()
    contacts = db.execute_sql(
        "SELECT display_name FROM contacts WHERE customer_id = %s ORDER BY 1", (customer_id,)
    ).fetchall()
    return {"messages": rows, "contacts": contacts}


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    history=st.lists(message, min_size=1, max_size=10),
    channel=st.sampled_from(["email", "mms"]),
    data=st.data(),
)
def test_an_erased_person_leaves_no_trace_and_others_keep_everything(db, history, channel, data):
    token = uuid.uuid4().hex[:10]
    folder = Path(tempfile.mkdtemp(prefix="convdb-store-"))
    store = LocalStore(AttachmentSettings(directory=folder))
    customers = [f"c{i}x{token}" for i in range(CUSTOMERS)]
    # Numbers unique to this example: +1 415 and seven digits, +1 646 for the customers.
    base = 2_000_000 + int(token[:6], 16) % 7_000_000
    if channel == "email":
        addresses = [f"p{i}.{token}@example.com" for i in range(PEOPLE)]
        ours_of = [f"support@{c}.example" for c in customers]
    else:
        addresses = [f"+1415{base + i:07d}" for i in range(PEOPLE)]
        ours_of = [f"+1646{base + i:07d}" for i in range(CUSTOMERS)]
    names = [f"Name{i}{token}" for i in range(PEOPLE)]
    phrases = [f"phrase{i}{token}" for i in range(PEOPLE)]
    files: dict[int, object] = {}  # stored when first sent
    payloads, events = [], []
    for n, (c, p, direction, other, attached, key, status) in enumerate(history):
        ours = ours_of[c]
        people = addresses[p] + ("" if other is None or other == p else "," + addresses[other])
        if direction == "inbound":
            body = f"hello {phrases[p]}"
            payload = event(
                n,
                customers[c],
                addresses[p],
                ours + "," + people.split(",", 1)[-1] if "," in people else ours,
                body,
                name=names[p],
                kind=channel,
            )
            payload["to"] = [{"address": ours}] + [{"address": a} for a in people.split(",")[1:]]
            if attached:
                if p not in files:
                    files[p] = store.put(f"file{p}{token}".encode(), "text/plain", f"f{p}.txt")
                payload["attachments"] = [files[p].entry()]
        else:
            payload = event(
                n,
                customers[c],
                ours,
                people,
                f"reply {n} from us",
                direction=direction,
                kind=channel,
            )
        if key is not None:
            payload["conversation_key"] = f"k{key}"
        payloads.append(payload)
        if status is not None:
            events.append((payload, status, f"{token}:{n}"))
    ingest(db, payloads)
    for payload, status, key in events:
        db.execute_sql(
            "INSERT INTO inbound_events (event_type, payload, idempotency_key, status) "
            "VALUES ('message.received', %s::jsonb, %s, %s)",
            (json.dumps(payload), key, status),
        )
    pairs = sorted({(c, p) for c, p, *_ in history})
    c, p = data.draw(st.sampled_from(pairs))
    ids = {
        k: db.execute_sql("SELECT id FROM customers WHERE key = %s", (k,)).fetchone()
        for k in customers
    }
    others = {k: _customer_data(db, i[0]) for k, i in ids.items() if i and k != customers[c]}

    old = os.environ.get("CONVDB_ATTACHMENT_DIR")
    os.environ["CONVDB_ATTACHMENT_DIR"] = str(folder)
    try:
        written = (
            addresses[p].upper()
            if channel == "email"
            else addresses[p][:2] + " (" + addresses[p][2:5] + ") " + addresses[p][5:]
        )
        result = erase_contact(db, customers[c], written)
    finally:
        if old is None:
            os.environ.pop("CONVDB_ATTACHMENT_DIR")
        else:
            os.environ["CONVDB_ATTACHMENT_DIR"] = old
    assert result.counts["contacts"] == 1

    erased = ids[customers[c]][0]
    needles = [addresses[p], names[p], phrases[p]]
    if channel != "email":  # search documents hold a number as its digits reversed
        needles.append(addresses[p][1:][::-1])
    for table, column, needle, ctid in scan(db, needles):
        holders = owners(db, table, ctid)
        assert holders and erased not in holders, (table, column, needle, holders)
    file_needle = f"file{p}{token}".encode()
    for path, _ in scan_files(folder, [file_needle]):
        url = "convdb-attachment://sha256/" + path.name
        users = db.execute_sql(
            "SELECT count(*) FROM attachment_urls WHERE normalized = %s", (url,)
        ).fetchone()[0]
        assert users, f"{path} is left with nothing using it"
    # Nobody else lost anything, and every counter is a recount.
    assert {k: _customer_data(db, ids[k][0]) for k in others} == others
    assert db.execute_sql(STORED).fetchall() == db.execute_sql(ACTUAL).fetchall()
    for (url,) in db.execute_sql(
        "SELECT normalized FROM attachment_urls WHERE normalized LIKE %s", (f"%{''}%",)
    ).fetchall():
        digest = url.rsplit("/", 1)[-1]
        if any(f.sha256 == digest for f in files.values()):
            assert store.path_of(digest).exists(), "a file another customer uses was removed"
