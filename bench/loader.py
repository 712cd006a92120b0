"""Load a synthetic conversation dataset with plain SQL, as an analyst's loader would.

Everything is ``INSERT ... SELECT FROM generate_series`` on the convdb schema,
through every trigger (dedup normalization and hashing, conversation
counters): no trigger is disabled, so the counters the pages read are the ones
the database keeps. :func:`check_counters` proves it after the load.

Shape (``Scale``): ``customers`` customers with one SMS and one email provider
each; ``conversations`` conversations, every 20th one belonging to customer 1
(a heavy inbox), the others spread evenly; one contact per conversation,
linked as its participant; ``messages`` messages, nine in ten spread evenly
over the conversations and one in ten into 1% of them ("hot" conversations,
with well over 50 messages each at full scale); SMS on odd conversations,
email on even ones; bodies drawn from a pool (many duplicates); every 20th
message carries an attachment. ``sent_at`` grows with the message number.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import psycopg2

CHUNK = 100_000


@dataclass(frozen=True)
class Scale:
    customers: int
    conversations: int
    messages: int

    @property
    def bodies(self) -> int:
        return max(10, self.messages // 50)

    @property
    def urls(self) -> int:
        return max(5, self.messages // 200)

    @property
    def hot_conversations(self) -> int:
        return max(1, self.conversations // 100)

    def sizes(self) -> dict[str, int]:
        """Messages per hot conversation, and per other one (plus one for the first few)."""
        hot_size = min(100, self.messages // (2 * self.hot_conversations))
        cold = self.conversations - self.hot_conversations
        rest = self.messages - hot_size * self.hot_conversations
        return {
            "hot_size": hot_size,
            "cold": cold,
            "cold_size": rest // cold,
            "cold_extra": rest % cold,
        }

    def label(self) -> str:
        return f"{self.messages:,} messages"


SETUP = """
INSERT INTO customers (name)
SELECT 'Bench customer ' || i FROM generate_series(1, %(customers)s) i;

INSERT INTO providers (customer_id, kind, name)
SELECT c.id, k.kind, k.name
  FROM customers c
 CROSS JOIN (VALUES ('sms', 'bench-sms'), ('email', 'bench-mail')) k (kind, name);

INSERT INTO conversations (customer_id, topic)
SELECT CASE WHEN i %% 20 = 0 THEN c0.first
            ELSE c0.first + (i * 7919) %% %(customers)s END,
       'bench topic ' || i
  FROM generate_series(1, %(conversations)s) i,
       (SELECT min(id) AS first FROM customers) c0;

INSERT INTO contacts (customer_id, display_name)
SELECT customer_id, 'Contact of ' || id FROM conversations ORDER BY id;

INSERT INTO conversation_participants (conversation_id, contact_id, role)
SELECT v.id, k.id, 'contact'
  FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM conversations) v
  JOIN (SELECT id, row_number() OVER (ORDER BY id) AS n FROM contacts) k USING (n);

INSERT INTO xms_bodies (raw)
SELECT 'Hi there, this is text message number ' || i || '.  See you soon!'
  FROM generate_series(1, %(bodies)s) i;
INSERT INTO email_bodies (raw)
SELECT E'Hello,\\n\\nThis is email body number ' || i
       || E' with a few lines of text.\\n\\nRegards,\\nThe bench'
  FROM generate_series(1, %(bodies)s) i;
INSERT INTO attachment_urls (raw)
SELECT 'https://files.example/bench/' || i || '.png' FROM generate_series(1, %(urls)s) i;
INSERT INTO attachments (url_id, content_type)
SELECT id, 'image/png' FROM attachment_urls ORDER BY id;
"""

# Messages are written conversation block by conversation block (as a loader
# importing an export thread by thread would), so each statement updates the
# counters of its block's conversations once. A hot conversation (every
# (conversations / hot)-th) gets ``hot_size`` messages, the others share the
# rest evenly. sent_at interleaves the conversations: the j-th message of the
# n-th conversation is sent at step (j - 1) * conversations + n.
MESSAGES = """
WITH conv AS (
    SELECT c.id, c.customer_id, c.n,
           CASE WHEN c.n %% (%(conversations)s / %(hot)s) = 0 THEN %(hot_size)s
                ELSE %(cold_size)s + CASE WHEN c.n %% %(cold)s < %(cold_extra)s
                                          THEN 1 ELSE 0 END
           END AS size
      FROM (SELECT id, customer_id, row_number() OVER (ORDER BY id) AS n
              FROM conversations) c
     WHERE c.n BETWEEN %(first)s AND %(last)s
),
bounds AS (
    SELECT (SELECT min(id) FROM xms_bodies) AS xms0,
           (SELECT min(id) FROM email_bodies) AS email0
)
INSERT INTO messages (conversation_id, provider_id, direction, email_body_id, xms_body_id,
                      sent_at, received_at)
SELECT c.id, p.id,
       CASE WHEN j %% 3 = 0 THEN 'outbound' ELSE 'inbound' END,
       CASE WHEN p.kind = 'email' THEN b.email0 + (c.n * 31 + j * 7) %% %(bodies)s END,
       CASE WHEN p.kind = 'sms' THEN b.xms0 + (c.n * 31 + j * 7) %% %(bodies)s END,
       timestamptz '2025-01-01 00:00:00+00'
           + ((j - 1) * %(conversations)s + c.n) * interval '3 seconds',
       timestamptz '2025-01-01 00:00:05+00'
           + ((j - 1) * %(conversations)s + c.n) * interval '3 seconds'
  FROM conv c
 CROSS JOIN bounds b
 CROSS JOIN LATERAL generate_series(1, c.size) j
  JOIN providers p ON p.customer_id = c.customer_id
                  AND p.kind = CASE WHEN c.n %% 2 = 1 THEN 'sms' ELSE 'email' END
"""

MESSAGE_ATTACHMENTS = """
INSERT INTO message_attachments (message_id, attachment_id)
SELECT m.id, a0.first + (m.id / 20) %% %(urls)s
  FROM messages m, (SELECT min(id) AS first FROM attachments) a0
 WHERE m.id %% 20 = 0
"""

CHECK_COUNTERS = """
SELECT count(*) FILTER (WHERE c.message_count <> COALESCE(m.n, 0)
                           OR c.last_message_at IS DISTINCT FROM m.last_sent_at),
       count(*) FILTER (WHERE c.participant_count <> COALESCE(p.n, 0))
  FROM conversations c
  LEFT JOIN (SELECT conversation_id, count(*) AS n, max(sent_at) AS last_sent_at
               FROM messages GROUP BY conversation_id) m ON m.conversation_id = c.id
  LEFT JOIN (SELECT conversation_id, count(*) AS n
               FROM conversation_participants GROUP BY conversation_id) p
         ON p.conversation_id = c.id
"""


def load(url: str, scale: Scale, *, echo=print) -> float:
    """Load ``scale`` into the migrated, empty database at ``url``; return seconds taken."""
    params = {
        "customers": scale.customers,
        "conversations": scale.conversations,
        "bodies": scale.bodies,
        "urls": scale.urls,
        "hot": scale.hot_conversations,
        **scale.sizes(),
    }
    started = time.perf_counter()
    conn = psycopg2.connect(url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(SETUP, params)
        step = max(1, scale.conversations * CHUNK // scale.messages)
        for first in range(1, scale.conversations + 1, step):
            last = min(first + step - 1, scale.conversations)
            with conn, conn.cursor() as cur:
                cur.execute(MESSAGES, {**params, "first": first, "last": last})
            echo(f"  messages of {last:,} / {scale.conversations:,} conversations loaded")
        with conn, conn.cursor() as cur:
            cur.execute(MESSAGE_ATTACHMENTS, params)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("VACUUM ANALYZE")
    finally:
        conn.close()
    return time.perf_counter() - started


def check_counters(url: str) -> tuple[int, int]:
    """Conversations whose message counters, and participant counter, disagree with the rows."""
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(CHECK_COUNTERS)
            return cur.fetchone()
    finally:
        conn.close()


def sample_ids(url: str, scale: Scale, count: int, seed: int = 1) -> tuple[list, list]:
    """Customer ids for inbox pages (customer 1, the heavy one, among them) and
    hot conversation ids (at least 50 messages where the scale allows) for
    conversation pages."""
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT setseed(%s)", (seed / 1000,))
            cur.execute("SELECT id FROM customers ORDER BY random() LIMIT %s", (count,))
            customers = [r[0] for r in cur.fetchall()]
            cur.execute("SELECT min(id) FROM customers")
            customers[0] = cur.fetchone()[0]
            cur.execute(
                "SELECT id FROM conversations ORDER BY message_count DESC, id LIMIT %s",
                (scale.hot_conversations,),
            )
            hot = [r[0] for r in cur.fetchall()]
    finally:
        conn.close()
    conversations = [hot[i % len(hot)] for i in range(count)]
    return [customers[i % len(customers)] for i in range(count)], conversations


__all__ = ["Scale", "check_counters", "load", "sample_ids"]


# Every outbound message gets a delivery status (as the providers' reports
# would leave it): the pages then read datasets where status is present.
ADD_STATUSES = """
UPDATE messages
   SET status = (ARRAY['queued', 'sent', 'delivered', 'failed', 'read'])[1 + id % 5],
       status_at = sent_at + interval '1 minute'
 WHERE direction = 'outbound' AND status IS NULL
"""


def add_statuses(url: str) -> int:
    """Give every outbound message a status (migration 055's columns); how many."""
    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(ADD_STATUSES)
            count = cur.rowcount
            cur.execute("VACUUM ANALYZE messages")
            return count
    finally:
        conn.close()
