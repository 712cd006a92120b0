"""Set-based ingestion of a batch of canonical message events.

::

    from convdb.ingest_batch import ingest_messages
    with db.atomic():
        message_ids = ingest_messages(db, [parse_message(p) for p in payloads])

Writes exactly the rows :func:`convdb.ingest.ingest_message` would write for
the same messages in the same order, but in about fifteen statements for the
whole batch instead of ten or so per message: each kind of row (customers,
providers, endpoint mappings, addresses, bodies, URLs, contacts,
conversations, participants, messages, attachments) is found for the whole
batch in one ``SELECT ... JOIN unnest(...)`` and the missing ones are created
in one ``INSERT ... SELECT FROM unnest(...) ON CONFLICT``. Existing rows are
only read, never written (no needless tuple, no lock held on common values).

Concurrency: the unique constraints and ``ON CONFLICT`` keep concurrent
workers from creating anything twice, and every insert takes its keys in
sorted order so two batches lock the same new keys in the same order. A
deadlock is still possible against the per-event path; like any other error
it aborts the batch, and the worker redoes it event by event.

Counters: the insert counter triggers of ``messages`` and
``conversation_participants`` stand aside for the batch's two inserts
(migration 016, ``convdb.counters_by_caller``); a conversation the batch
creates is inserted with its final ``message_count``, ``participant_count``
and ``last_message_at``, the conversations that existed get one locking
``UPDATE`` for the whole batch. Without migration 016 the triggers count.

A 64-bit hash collision in a dedup table raises
:class:`~convdb.exceptions.DedupCollisionError` for the whole batch; the
per-event fallback then sends only the culprit ``dead``.

:func:`handle_batch` is the queue's batch handler for ``message.received``
and ``message.sent`` (registered by :mod:`convdb.core`).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Sequence

import peewee
import psycopg2.extensions

from . import dedup
from .exceptions import DedupCollisionError, PayloadError
from .ingest import CanonicalMessage, _address_table, _conversation_key, parse_message
from .sqlarray import Array

__all__ = ["handle_batch", "ingest_messages", "refresh_plans"]


MESSAGE_TYPES = (
    "bigint",
    "text",
    "bigint",
    "text",
    "bigint",
    "bigint",
    "timestamptz",
    "timestamptz",
)


def _rows(db, sql: str, params: Sequence = ()) -> list[tuple]:
    """Run ``sql``; its rows. A list in ``params`` goes as one array literal."""
    cursor = db.execute_sql(sql, tuple(Array(p) if type(p) is list else p for p in params))
    return cursor.fetchall() if cursor.description else []


def _columns(values: Iterable[tuple], width: int) -> list[list]:
    """Rows -> one list per column (the arrays ``unnest`` takes)."""
    columns = [list(column) for column in zip(*values, strict=True)]
    return columns or [[] for _ in range(width)]


def _unnest(types: Sequence[str]) -> str:
    return "unnest(" + ", ".join(f"%s::{t}[]" for t in types) + ")"


def _find_or_create(
    db,
    table: str,
    keys: Sequence[tuple[str, str]],
    extra: Sequence[tuple[str, str]],
    rows: dict[tuple, tuple],
    created: set | None = None,
) -> dict[tuple, int]:
    """Ids of ``table``'s rows by unique key (created with ``extra`` values when missing).

    ``keys``/``extra``: (column, SQL type) pairs; ``rows``: key tuple -> extra
    tuple. The key columns must carry a unique constraint. ``created``, if
    given, receives the keys of the rows this call inserted.
    """
    names = [k for k, _ in keys]
    types = [t for _, t in keys]
    on = " AND ".join(f"t.{k} = u.{k}" for k in names)
    select = (
        f"SELECT t.id, {', '.join(f't.{k}' for k in names)} FROM {table} t "
        f"JOIN {_unnest(types)} AS u({', '.join(names)}) ON {on}"
    )

    def find(wanted: list[tuple]) -> dict[tuple, int]:
        if not wanted:
            return {}
        return {tuple(r[1:]): r[0] for r in _rows(db, select, _columns(wanted, len(names)))}

    wanted = sorted(rows)
    found = find(wanted)
    missing = [k for k in wanted if k not in found]
    if not missing:
        return found
    columns = names + [c for c, _ in extra]
    all_types = types + [t for _, t in extra]
    insert = (
        f"INSERT INTO {table} ({', '.join(columns)}) "
        f"SELECT * FROM {_unnest(all_types)} AS u({', '.join(columns)}) "
        f"ORDER BY {', '.join(names)} "
        f"ON CONFLICT ({', '.join(names)}) DO NOTHING "
        f"RETURNING id, {', '.join(names)}"
    )
    params = _columns(((*k, *rows[k]) for k in missing), len(columns))
    inserted = {tuple(r[1:]): r[0] for r in _rows(db, insert, params)}
    found.update(inserted)
    if created is not None:
        created.update(inserted)
    # Created by a concurrent transaction meanwhile (ON CONFLICT waited for it).
    found.update(find([k for k in missing if k not in found]))
    if len(found) < len(wanted):
        raise RuntimeError(f"{table}: rows vanished while finding or creating them")
    return found


def _intern(db, table: str, column: str, values: dict[str, str]) -> dict[str, int]:
    """Ids of the dedup rows for ``values`` (normalized -> raw of its first occurrence)."""
    by_hash: dict[int, str] = {}
    for normalized in values:
        key = dedup.dedup_hash(normalized)
        if by_hash.setdefault(key, normalized) != normalized:
            raise DedupCollisionError(
                f"{table}: 64-bit hash collision on {key} within one batch: "
                f"{by_hash[key]!r} and {normalized!r}"
            )
    ids: dict[str, int] = {}
    if not by_hash:
        return ids
    hashes = sorted(by_hash)
    for id_, key, stored in _rows(
        db, f"SELECT id, hash, {column} FROM {table} WHERE hash = ANY(%s::bigint[])", [hashes]
    ):
        if stored != by_hash[key]:
            raise DedupCollisionError(
                f"{table}: 64-bit hash collision on {key} between existing {stored[:80]!r} "
                f"and new {by_hash[key][:80]!r}"
            )
        ids[stored] = id_
    missing = [h for h in hashes if by_hash[h] not in ids]
    if missing:
        # DO UPDATE (a no-op write) so a row inserted concurrently still returns
        # its id; its WHERE returns no row for a colliding value instead.
        returned = _rows(
            db,
            f"INSERT INTO {table} (raw, hash, {column}) "
            f"SELECT * FROM {_unnest(('text', 'bigint', 'text'))} "
            f"ON CONFLICT (hash) DO UPDATE SET hash = EXCLUDED.hash "
            f"WHERE {table}.{column} = EXCLUDED.{column} RETURNING id, hash",
            [
                [values[by_hash[h]] for h in missing],
                missing,
                [by_hash[h] for h in missing],
            ],
        )
        for id_, key in returned:
            ids[by_hash[key]] = id_
        lost = [h for h in missing if by_hash[h] not in ids]
        if lost:
            raise DedupCollisionError(
                f"{table}: 64-bit hash collision on {lost[0]} for {by_hash[lost[0]][:80]!r}"
            )
    return ids


def _new_ids(db, table: str, count: int) -> list[int]:
    """``count`` ids from ``table``'s identity sequence, in order."""
    if not count:
        return []
    rows = _rows(
        db,
        "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
        [table, count],
    )
    return [r[0] for r in rows]


def _first(pairs: Iterable[tuple]) -> dict:
    """key -> value of the first pair with that key."""
    out: dict = {}
    for key, value in pairs:
        out.setdefault(key, value)
    return out


def _contacts(db, wanted: list[tuple[int, str, int, str | None]]) -> dict[tuple, int]:
    """Contact ids by (customer id, link column, address id); ``wanted`` in message order.

    A new contact takes the name of the address's first occurrence; an
    existing (or new) contact without a name takes the first name seen later.
    """
    names: dict[tuple, str | None] = {}  # the first name seen, if any
    for customer_id, link, address_id, name in wanted:
        key = (customer_id, link, address_id)
        if names.get(key) is None:
            names[key] = name
    first_names = _first(((c, lk, a), n) for c, lk, a, n in wanted)
    found: dict[tuple, int] = {}
    unnamed: dict[int, str] = {}
    for link in sorted({lk for _, lk, _ in names}):
        keys = sorted((c, a) for c, lk, a in names if lk == link)
        select = (
            f"SELECT ca.customer_id, ca.{link}, ca.contact_id, c.display_name "
            f"FROM contact_addresses ca JOIN contacts c ON c.id = ca.contact_id "
            f"JOIN {_unnest(('bigint', 'bigint'))} AS u(customer_id, address_id) "
            f"ON ca.customer_id = u.customer_id AND ca.{link} = u.address_id"
        )
        existing = {(c, a): (i, n) for c, a, i, n in _rows(db, select, _columns(keys, 2))}
        missing = [k for k in keys if k not in existing]
        if missing:
            ids = _new_ids(db, "contacts", len(missing))
            creation = [first_names[(c, link, a)] for c, a in missing]
            _rows(
                db,
                "INSERT INTO contacts (id, customer_id, display_name) "
                f"SELECT * FROM {_unnest(('bigint', 'bigint', 'text'))}",
                [ids, [c for c, _ in missing], creation],
            )
            linked = _rows(
                db,
                f"INSERT INTO contact_addresses (customer_id, contact_id, {link}) "
                f"SELECT * FROM {_unnest(('bigint', 'bigint', 'bigint'))} "
                f"ON CONFLICT (customer_id, {link}) DO NOTHING RETURNING contact_id",
                [[c for c, _ in missing], ids, [a for _, a in missing]],
            )
            mine = {r[0] for r in linked}
            for (c, a), id_, name in zip(missing, ids, creation, strict=True):
                if id_ in mine:
                    existing[(c, a)] = (id_, name)
            lost = [id_ for id_ in ids if id_ not in mine]
            if lost:  # a concurrent worker linked these addresses first: use its contacts
                _rows(db, "DELETE FROM contacts WHERE id = ANY(%s::bigint[])", [lost])
                theirs = [k for k in missing if k not in existing]
                rows = _rows(db, select, _columns(theirs, 2))
                existing.update({(c, a): (i, n) for c, a, i, n in rows})
        for (c, a), (contact_id, stored_name) in existing.items():
            found[(c, link, a)] = contact_id
            later = names[(c, link, a)]
            if stored_name is None and later:
                unnamed[contact_id] = later
    if unnamed:  # a name learnt from a later message
        ids = sorted(unnamed)
        _rows(
            db,
            "UPDATE contacts SET display_name = u.name "
            f"FROM {_unnest(('bigint', 'text'))} AS u(id, name) "
            "WHERE contacts.id = u.id AND contacts.display_name IS NULL",
            [ids, [unnamed[i] for i in ids]],
        )
    return found


# Connection -> (backend pid, events ingested, count at which plans are dropped next).
_GROWTH: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
FIRST_REPLAN = 200


def refresh_plans(db, count: int) -> None:
    """Drop this session's cached plans each time its ingested events double.

    Foreign-key checks and the counter triggers run cached plans. A generic
    plan made while a table was small is a sequential scan, and it stays one
    as the table grows (seen: a seq scan of ``contacts`` per inserted
    participant, a worker slowing from 450 to 120 events/s over 20,000 events
    started on an empty database). ``DISCARD PLANS`` makes them replan at the
    current sizes; doubling keeps that to a handful of times per session.
    """
    conn = db.connection()
    pid = conn.info.backend_pid
    state = _GROWTH.get(conn)
    if state is None or state[0] != pid:
        state = (pid, 0, FIRST_REPLAN)
    seen, threshold = state[1] + count, state[2]
    if seen >= threshold:
        db.execute_sql("DISCARD PLANS")
        threshold = seen * 2
    _GROWTH[conn] = (pid, seen, threshold)


def ingest_messages(db: peewee.Database, messages: Sequence[CanonicalMessage]) -> list[int | None]:
    """Write ``messages`` (in order); per message, its new id or None if already stored.

    Runs in the caller's transaction. Any error aborts the whole batch.
    """
    if not messages:
        return []
    refresh_plans(db, len(messages))
    customers = _find_or_create(
        db,
        "customers",
        [("key", "text")],
        [("name", "text")],
        _first(((m.customer_key,), (m.customer_name,)) for m in messages),
    )
    cust = [customers[(m.customer_key,)] for m in messages]
    providers = _find_or_create(
        db,
        "providers",
        [("customer_id", "bigint"), ("kind", "text"), ("name", "text")],
        [],
        {(c, m.provider_kind, m.provider_name): () for c, m in zip(cust, messages, strict=True)},
    )
    prov = [
        providers[(c, m.provider_kind, m.provider_name)]
        for c, m in zip(cust, messages, strict=True)
    ]
    # Stored before, or earlier in this batch: nothing to write (a redelivery).
    keys = sorted({(p, m.message_id) for p, m in zip(prov, messages, strict=True)})
    stored = {
        tuple(r)
        for r in _rows(
            db,
            "SELECT m.provider_id, m.provider_message_id FROM messages m "
            f"JOIN {_unnest(('bigint', 'text'))} AS u(p, k) "
            "ON m.provider_id = u.p AND m.provider_message_id = u.k",
            _columns(keys, 2),
        )
    }
    todo = []
    for i, (p, m) in enumerate(zip(prov, messages, strict=True)):
        if (p, m.message_id) not in stored:
            stored.add((p, m.message_id))
            todo.append(i)
    results: list[int | None] = [None] * len(messages)
    if not todo:
        return results
    batch = [messages[i] for i in todo]
    cust = [cust[i] for i in todo]
    prov = [prov[i] for i in todo]
    pairs = list(zip(batch, cust, prov, strict=True))
    _endpoints(db, pairs)
    addresses = _addresses(db, batch)
    wanted, people = [], []
    for m, c in zip(batch, cust, strict=True):
        link = _address_table(m.provider_kind)[2]
        us = m.customer_endpoint
        sides = [(us, us.name or m.customer_name, "customer")]
        sides += [(a, a.name, "contact") for a in m.contacts]
        people.append([((c, link, addresses[link][a.normalized]), role) for a, _, role in sides])
        wanted += [(c, link, addresses[link][a.normalized], n) for a, n, _ in sides]
    contacts = _contacts(db, wanted)
    messages_aside, participants_aside = _counters_by_caller(db)
    try:
        created, joined, new_ids, stored = _write(
            db, pairs, people, contacts, messages_aside, participants_aside
        )
    finally:
        if not _aborted(db):
            _rows(db, "SELECT set_config('convdb.counters_by_caller', 'off', true)")
    _count_rows(db, joined if participants_aside else [], stored if messages_aside else [], created)
    for i, message_id in zip(todo, new_ids, strict=True):
        results[i] = message_id
    _attachments(db, batch, new_ids)
    return results


def _write(db, pairs, people, contacts, messages_aside: bool, participants_aside: bool):
    """Conversations (born with their counters), participants and messages:
    (conversations created, participants joined, message ids, messages stored)."""
    batch = [m for m, _, _ in pairs]
    # Per conversation (by its key): the messages and participant rows this
    # batch writes into it, so a conversation it creates is born with its
    # counters (no UPDATE of a row just inserted; see _count_rows).
    conversation_keys = [
        (column, c, k)
        for (column, k), c in zip(
            map(_conversation_key, batch), (c for _, c, _ in pairs), strict=True
        )
    ]
    joining: dict[tuple, set] = {}
    for key, group in zip(conversation_keys, people, strict=True):
        joining.setdefault(key, set()).update((contacts[person], role) for person, role in group)
    arriving: dict[tuple, list] = {}  # key -> [messages, latest sent_at]
    for key, m in zip(conversation_keys, batch, strict=True):
        entry = arriving.setdefault(key, [0, m.sent_at])
        entry[0] += 1
        entry[1] = max(entry[1], m.sent_at)
    conversations: dict[tuple, int] = {}
    created: dict[int, tuple[int, int, object]] = {}  # id -> counters it was born with
    for column in ("key", "thread_key"):
        rows = _first(
            (
                (c, k),
                (
                    m.subject,
                    arriving[(col, c, k)][0] if messages_aside else 0,
                    len(joining[(col, c, k)]) if participants_aside else 0,
                    arriving[(col, c, k)][1] if messages_aside else None,
                ),
            )
            for m, (col, c, k) in zip(batch, conversation_keys, strict=True)
            if col == column
        )
        if rows:
            new: set[tuple] = set()
            found = _find_or_create(
                db,
                "conversations",
                [("customer_id", "bigint"), (column, "text")],
                [
                    ("topic", "text"),
                    ("message_count", "bigint"),
                    ("participant_count", "bigint"),
                    ("last_message_at", "timestamptz"),
                ],
                rows,
                created=new,
            )
            conversations.update({(column, *k): v for k, v in found.items()})
            created.update({found[k]: rows[k][1:] for k in new})
    conv = [conversations[key] for key in conversation_keys]
    participants = sorted(
        {
            (cv, contacts[person], role)
            for cv, group in zip(conv, people, strict=True)
            for person, role in group
        }
    )
    joined = _rows(
        db,
        "INSERT INTO conversation_participants (conversation_id, contact_id, role) "
        f"SELECT * FROM {_unnest(('bigint', 'bigint', 'text'))} ON CONFLICT DO NOTHING "
        "RETURNING conversation_id",
        _columns(participants, 3),
    )
    new_ids, stored = _messages(db, pairs, conv)
    return created, joined, new_ids, stored


def _endpoints(db, pairs) -> None:
    """The customer's own address of each message as an ``endpoint_mappings`` row."""
    first = _first(
        ((c, m.provider_kind, m.customer_endpoint.normalized), (p, m)) for m, c, p in pairs
    )
    _find_or_create(
        db,
        "endpoint_mappings",
        [("customer_id", "bigint"), ("kind", "text"), ("normalized", "text")],
        [("provider_id", "bigint"), ("address", "text"), ("hash", "bigint")],
        {
            key: (p, m.customer_endpoint.raw, dedup.dedup_hash(key[2]))
            for key, (p, m) in first.items()
        },
    )


def _addresses(db, batch) -> dict[str, dict[str, int]]:
    """Address ids by link column and normalized address (every side of every message)."""
    raw: dict[str, dict[str, str]] = {}
    for m in batch:
        table, column, link = _address_table(m.provider_kind)
        seen = raw.setdefault(link, {})
        for a in (m.customer_endpoint, *m.contacts):
            seen.setdefault(a.normalized, a.raw)
    out = {}
    for link, values in sorted(raw.items()):
        table, column, _ = _address_table("email" if link == "email_address_id" else "sms")
        out[link] = _intern(db, table, column, values)
    return out


def _messages(db, pairs, conv: list[int]) -> tuple[list[int | None], list[tuple]]:
    """Insert the messages (and intern their bodies): per message its new id or
    None, and (conversation id, sent_at) of every message inserted."""
    bodies: dict[str, dict[str, str]] = {"email_bodies": {}, "xms_bodies": {}}
    normalized = []
    for m, _, _ in pairs:
        text = dedup.normalize_body(m.body)
        normalized.append(text)
        if text:
            table = "email_bodies" if m.channel == "email" else "xms_bodies"
            bodies[table].setdefault(text, m.body)
    ids = {t: _intern(db, t, "normalized", v) for t, v in bodies.items()}
    rows = []
    for (m, _, p), cv, text in zip(pairs, conv, normalized, strict=True):
        email = ids["email_bodies"][text] if text and m.channel == "email" else None
        xms = ids["xms_bodies"][text] if text and m.channel != "email" else None
        rows.append((p, m.message_id, cv, m.direction, email, xms, m.sent_at, m.received_at))
    inserted = _rows(
        db,
        "INSERT INTO messages (provider_id, provider_message_id, conversation_id, direction, "
        "email_body_id, xms_body_id, sent_at, received_at) "
        f"SELECT * FROM {_unnest(MESSAGE_TYPES)} AS u(p, k, c, d, e, x, s, r) ORDER BY p, k "
        "ON CONFLICT (provider_id, provider_message_id) DO NOTHING "
        "RETURNING id, provider_id, provider_message_id, conversation_id, sent_at",
        _columns(rows, 8),
    )
    by_key = {(p, k): i for i, p, k, _, _ in inserted}
    # None: a concurrent worker stored the same message first.
    ids = [by_key.get((p, m.message_id)) for m, _, p in pairs]
    return ids, [(c, s) for _, _, _, c, s in inserted]


# Turns the setting on and says, per table, whether its insert counter trigger
# will stand aside: it will if it calls 016's function and is enabled (as the
# session's replication role sees it). A database without migration 016 (or
# with the triggers disabled) answers false, and the rows are counted exactly
# as its triggers count them.
STAND_ASIDE = """
SELECT set_config('convdb.counters_by_caller', 'on', true), {messages}, {participants}
""".format(
    **{
        name: f"""EXISTS (
    SELECT FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
     WHERE t.tgrelid = '{table}'::regclass AND t.tgname = '{table}_count_inserted'
       AND p.proname = '{function}'
       AND CASE t.tgenabled
               WHEN 'A' THEN true
               WHEN 'O' THEN current_setting('session_replication_role') <> 'replica'
               WHEN 'R' THEN current_setting('session_replication_role') = 'replica'
               ELSE false
           END)"""
        for name, table, function in (
            ("messages", "messages", "convdb_messages_inserted_v3"),
            ("participants", "conversation_participants", "convdb_participants_changed_v3"),
        )
    }
)


def _counters_by_caller(db) -> tuple[bool, bool]:
    """Ask the insert counter triggers of ``messages`` and ``conversation_participants``
    to stand aside for this transaction; per table, whether it will.

    Takes the lock an ``INSERT`` takes on both tables first, so the answer
    holds until the transaction ends: changing a trigger waits for that lock.
    """
    row = _rows(
        db,
        "LOCK TABLE messages, conversation_participants IN ROW EXCLUSIVE MODE; " + STAND_ASIDE,
    )[0]
    return row[1], row[2]


def _aborted(db) -> bool:
    """True when the connection's transaction has failed (only a rollback helps)."""
    status = db.connection().info.transaction_status
    return status == psycopg2.extensions.TRANSACTION_STATUS_INERROR


def _count_rows(db, joined: list[tuple], stored: list[tuple], created: dict) -> None:
    """Add the participants ``joined`` (conversation id) and messages ``stored``
    (conversation id, sent_at) to their conversations' counters, as the counter
    triggers (migrations 010, 015, 016) would.

    A conversation this batch ``created`` (id -> the message count,
    participant count and ``last_message_at`` it was inserted with) is left
    alone when that is what was written; it differs only when a concurrent
    worker stored one of its messages first. The others are locked in id
    order, then changed in one ``UPDATE`` (which also bumps ``updated_at``).
    """
    counts: dict[int, list] = {}  # conversation id -> [messages, participants, last sent_at]
    for (conversation_id,) in joined:
        counts.setdefault(conversation_id, [0, 0, None])[1] += 1
    for conversation_id, sent_at in stored:
        entry = counts.setdefault(conversation_id, [0, 0, None])
        entry[0] += 1
        if entry[2] is None or sent_at > entry[2]:
            entry[2] = sent_at
    recount = []
    for conversation_id, (messages, participants, last) in created.items():
        entry = counts.pop(conversation_id, [0, 0, None])
        if entry[0] != messages or entry[2] != last:
            recount.append(conversation_id)  # messages and last_message_at from the table
        if entry[1] != participants:
            counts[conversation_id] = [0, entry[1] - participants, None]
    if recount:
        _rows(
            db,
            "UPDATE conversations c SET message_count = s.n, last_message_at = s.last "
            "FROM (SELECT c2.id, count(m.id) AS n, max(m.sent_at) AS last "
            "FROM conversations c2 LEFT JOIN messages m ON m.conversation_id = c2.id "
            "WHERE c2.id = ANY(%s::bigint[]) GROUP BY c2.id) s WHERE c.id = s.id",
            [sorted(recount)],
        )
    if not counts:
        return
    ids = sorted(counts)
    _rows(
        db,
        "SELECT 1 FROM conversations WHERE id = ANY(%s::bigint[]) ORDER BY id FOR NO KEY UPDATE",
        [ids],
    )
    _rows(
        db,
        "UPDATE conversations c "
        "SET message_count = c.message_count + u.m, "
        "participant_count = c.participant_count + u.p, "
        "last_message_at = GREATEST(c.last_message_at, u.last) "
        f"FROM {_unnest(('bigint', 'bigint', 'bigint', 'timestamptz'))} AS u(id, m, p, last) "
        "WHERE c.id = u.id AND c.id = ANY(%s::bigint[])",
        [*_columns(((i, *counts[i]) for i in ids), 4), ids],
    )


def _attachments(db, batch, new_ids: list[int | None]) -> None:
    files = [
        (message_id, url, content_type, size)
        for m, message_id in zip(batch, new_ids, strict=True)
        if message_id is not None
        for url, content_type, size in m.attachments
    ]
    if not files:
        return
    urls = _intern(
        db,
        "attachment_urls",
        "normalized",
        _first((dedup.normalize_url(f[1]), f[1]) for f in files),
    )
    ids = _new_ids(db, "attachments", len(files))
    _rows(
        db,
        "INSERT INTO attachments (id, url_id, content_type, size) "
        f"SELECT * FROM {_unnest(('bigint', 'bigint', 'text', 'bigint'))}",
        [
            ids,
            [urls[dedup.normalize_url(f[1])] for f in files],
            [f[2] for f in files],
            [f[3] for f in files],
        ],
    )
    _rows(
        db,
        "INSERT INTO message_attachments (message_id, attachment_id) "
        f"SELECT * FROM {_unnest(('bigint', 'bigint'))}",
        [[f[0] for f in files], ids],
    )


def handle_batch(events: Sequence) -> dict[int, PayloadError]:
    """Batch handler for the canonical events: ingest every valid one in one go.

    Returns the events refused (invalid payload) by id with their error;
    nothing of theirs was written. Any other error propagates (the worker
    then redoes the batch event by event).
    """
    from .db import database

    refused: dict[int, PayloadError] = {}
    valid = []
    for event in events:
        try:
            valid.append(parse_message(event.payload, event.event_type))
        except PayloadError as exc:
            refused[event.id] = exc
    ingest_messages(database, valid)
    return refused
