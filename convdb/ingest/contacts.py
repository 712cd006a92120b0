"""Contacts: every address of a batch interned, and its contact per customer found or created.

A contact is found per customer by its normalized address
(``contact_addresses`` links it to its row in ``email_addresses`` or
``phone_numbers``). A new contact takes the name its address carries at
its first occurrence in the batch; a contact without a name takes the first
name a later occurrence gives. When a concurrent transaction links an
address first, the contact created here for it is deleted and the other one
used.
"""

from __future__ import annotations

from .. import dedup
from ..exceptions import TransientError
from .statements import columns, first, intern, run, unnest

__all__ = ["people"]

_ADDRESSES = {"email": dedup.EMAIL_ADDRESSES, "xms": dedup.PHONE_NUMBERS}
# The column of contact_addresses that links a contact to each channel's addresses.
_LINK = {"email": "email_address_id", "xms": "phone_number_id"}

# Addresses by (customer, hash), with the contact each one has for that
# customer; LATERAL subqueries for the reason given at the writer's LOOKUP.
CONTACTS = """
SELECT u.customer_id, u.hash, a.id, a.{column}, ca.contact_id, ct.display_name
  FROM unnest(%s::bigint[], %s::bigint[]) AS u(customer_id, hash)
  JOIN LATERAL (SELECT id, {column} FROM {table} WHERE hash = u.hash LIMIT 1) a ON true
  LEFT JOIN LATERAL (
        SELECT contact_id FROM contact_addresses
         WHERE customer_id = u.customer_id AND {link} = a.id LIMIT 1) ca ON true
  LEFT JOIN LATERAL (SELECT display_name FROM contacts WHERE id = ca.contact_id LIMIT 1) ct ON true
"""

# A new contact per (customer, address, name), linked to its address; per
# row whether the link was made (false: a concurrent transaction linked that
# address first, and the contact is to be deleted again).
NEW_CONTACTS = """
WITH u AS (
    SELECT nextval(pg_get_serial_sequence('contacts', 'id')) AS id, u.*
      FROM unnest(%s::bigint[], %s::bigint[], %s::text[]) AS u(customer_id, address_id, name)
), c AS (
    INSERT INTO contacts (id, customer_id, display_name) SELECT id, customer_id, name FROM u
), l AS (
    INSERT INTO contact_addresses (customer_id, contact_id, {link})
    SELECT customer_id, id, address_id FROM u ORDER BY customer_id, address_id
        ON CONFLICT (customer_id, {link}) DO NOTHING
    RETURNING contact_id
)
SELECT u.customer_id, u.address_id, u.id, l.contact_id IS NOT NULL
  FROM u LEFT JOIN l ON l.contact_id = u.id
"""


def people(db, batch: list) -> list[list[tuple[int, str]]]:
    """Per message of ``batch`` (the writer's rows: ``msg`` and ``customer`` id), its
    (contact id, role) pairs: the customer's own address (role ``customer``,
    named after the customer unless the payload names it), then the contacts."""
    sides = []
    wanted: dict[str, list] = {"email": [], "xms": []}
    for r in batch:
        m, us = r.msg, r.msg.customer_endpoint
        mine = [(us, us.name or m.customer_name, "customer")]
        mine += [(a, a.name, "contact") for a in m.contacts]
        sides.append(mine)
        wanted[m.channel] += [(r.customer, a, name) for a, name, _ in mine]
    contacts = {ch: _contacts(db, ch, w) for ch, w in wanted.items() if w}
    return [
        [(contacts[r.msg.channel][(r.customer, a.normalized)], role) for a, _, role in mine]
        for r, mine in zip(batch, sides, strict=True)
    ]


def _contacts(db, channel: str, wanted: list) -> dict[tuple[int, str], int]:
    """Contact ids by (customer id, normalized address) of one channel.

    ``wanted``: (customer id, address, name given) in message order. A new
    contact takes the name of its address's first occurrence; a contact
    without a name takes the first name given later.
    """
    table, link = _ADDRESSES[channel], _LINK[channel]
    given = first(((c, a.normalized), (a.raw, name)) for c, a, name in wanted)
    named: dict[tuple, str] = {}
    for c, a, name in wanted:
        if name:
            named.setdefault((c, a.normalized), name)
    sql = CONTACTS.format(column=table.column, table=table.name, link=link)
    keys = sorted({(c, dedup.dedup_hash(n)) for c, n in given})
    found = run(db, sql, columns(keys, 2))
    raw = first((a.normalized, a.raw) for _, a, _ in wanted)
    address_ids = intern(db, table, raw, {(a, h, n) for _, h, a, n, _, _ in found})
    contacts: dict[tuple, int] = {}
    stored_names: dict[int, str | None] = {}
    for c, _, _, n, contact, name in found:
        if contact is not None and (c, n) in given:
            contacts[(c, n)] = contact
            stored_names[contact] = name
    _pin(db, sorted(set(contacts.values())))
    missing = sorted(k for k in given if k not in contacts)
    if missing:
        created = _new_contacts(
            db, link, [(c, address_ids[n], given[(c, n)][1]) for c, n in missing]
        )
        by_address = {address_ids[n]: n for _, n in missing}
        for c, address_id, contact in created:
            key = (c, by_address[address_id])
            contacts[key] = contact
            stored_names[contact] = given[key][1]
        lost = [k for k in missing if k not in contacts]
        if lost:  # a concurrent worker linked these addresses first: use its contacts
            rows = run(db, sql, columns(sorted((c, dedup.dedup_hash(n)) for c, n in lost), 2))
            for c, _, _, n, contact, name in rows:
                if (c, n) in given and contact is not None:
                    contacts[(c, n)] = contact
                    stored_names[contact] = name
            if any(k not in contacts for k in lost):  # ... and deleted it since: a race
                raise TransientError("contacts: deleted while this batch was linking them")
            _pin(db, sorted({contacts[k] for k in lost}))
    unnamed = {
        contacts[key]: name for key, name in named.items() if stored_names[contacts[key]] is None
    }
    if unnamed:
        ids = sorted(unnamed)
        run(
            db,
            "UPDATE contacts SET display_name = u.name "
            f"FROM {unnest(('bigint', 'text'))} AS u(id, name) "
            "WHERE contacts.id = u.id AND contacts.display_name IS NULL",
            [ids, [unnamed[i] for i in ids]],
        )
    return contacts


# The contacts found, locked against an erasure until the batch commits (after
# their addresses, before bodies: the order convdb.privacy.erase locks them in).
PIN_CONTACTS = "SELECT id FROM contacts WHERE id = ANY(%s::bigint[]) ORDER BY id FOR KEY SHARE"


def _pin(db, ids: list[int]) -> None:
    if ids and len(run(db, PIN_CONTACTS, [ids])) < len(ids):
        raise TransientError("contacts: erased while this batch was using them; retried")


def _new_contacts(db, link: str, rows: list[tuple[int, int, str | None]]) -> list[tuple]:
    """Create and link a contact per (customer id, address id, name); the
    (customer id, address id, contact id) of each link made. A contact whose
    address a concurrent transaction linked first is deleted again."""
    created = run(db, NEW_CONTACTS.format(link=link), columns(rows, 3))
    lost = sorted(contact for _, _, contact, linked in created if not linked)
    if lost:
        run(db, "DELETE FROM contacts WHERE id = ANY(%s::bigint[])", [lost])
    return [(c, a, contact) for c, a, contact, linked in created if linked]
