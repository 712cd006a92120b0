"""``make demo``'s delivery status part: outbound messages and their Twilio status callbacks.

The demo customer's in-house sender records three outbound SMS
(``message.sent``, Standard Webhooks) on the demo's Twilio provider, and
Twilio's status callbacks come to the demo's Twilio endpoint, signed as
Twilio signs them:

- one early: ``delivered`` for the first message *before* it is recorded
  (kept, and applied when ``message.sent`` arrives);
- one late: ``sent`` for the second message after its ``delivered`` (kept in
  the history, changes nothing);
- one bounce: ``undelivered`` with ``ErrorCode`` 30003 for the third.

:data:`STATUS_TABLE` is what the demo prints after the worker drained them.
"""

from __future__ import annotations

import json
import time

from ..serve.providers import samples
from ..serve.standard import sign

PROVIDER = {"kind": "sms", "name": "demo-twilio"}
CUSTOMER_NUMBER = "+12125550100"
CONTACT_NUMBER = "+14155550123"
SIDS = [f"SM{'5a7' * 10}{n:02d}" for n in (1, 2, 3)]

STATUS_TABLE = """
SELECT m.provider_message_id, m.status, m.status_at,
       (SELECT string_agg(r.word || coalesce(' ' || r.detail, ''), ', ' ORDER BY r.id)
          FROM message_status_reports r WHERE r.message_id = m.id) AS reports
  FROM messages m JOIN providers p ON p.id = m.provider_id
 WHERE p.name = 'demo-twilio' AND m.direction = 'outbound'
 ORDER BY m.provider_message_id
"""


def _sent(sid: str, n: int) -> dict:
    return {
        "customer": {"key": "acme", "name": "Acme, Inc."},
        "provider": PROVIDER,
        "message_id": sid,
        "from": {"address": CUSTOMER_NUMBER},
        "to": [{"address": CONTACT_NUMBER}],
        "body": f"Your order {n} has shipped",
        "sent_at": "2025-11-05T12:00:00Z",
    }


def deliver(
    base: str, sender: tuple[str, str], twilio: tuple[str, str], post
) -> list[tuple[str, str, int]]:
    """POST the recordings and the callbacks in the demo's order; (what, message, HTTP) rows.

    ``sender`` is (path, secret) of acme's Standard Webhooks endpoint,
    ``twilio`` (path, auth token) of the demo's Twilio endpoint.
    """
    rows = []

    def callback(sid: str, word: str, error: str | None = None, note: str = "") -> None:
        body, headers = samples.twilio_status_request(
            base + twilio[0],
            twilio[1],
            sid,
            word,
            error=error,
            customer_number=CUSTOMER_NUMBER,
            contact_number=CONTACT_NUMBER,
        )
        status, _ = post(base, twilio[0], body, headers)
        rows.append((f"twilio callback {word}{' ' + note if note else ''}", sid, status))

    def record(sid: str, n: int) -> None:
        body = json.dumps({"type": "message.sent", "data": _sent(sid, n)}).encode()
        headers = {
            **sign(sender[1], f"demo_sent_{sid}", int(time.time()), body),
            "content-type": "application/json",
        }
        status, _ = post(base, sender[0], body, headers)
        rows.append(("message.sent (the app records it)", sid, status))

    callback(SIDS[0], "delivered", note="(early: before message.sent)")
    for n, sid in enumerate(SIDS, 1):
        record(sid, n)
    callback(SIDS[1], "delivered")
    callback(SIDS[1], "sent", note="(late: after delivered)")
    callback(SIDS[2], "undelivered", "30003", note="(a bounce)")
    return rows


__all__ = ["STATUS_TABLE", "deliver"]
