"""One real-shaped request per provider, signed or authenticated as the provider does.

What ``make demo`` posts and the benchmarks replay: :func:`request` gives the
body and headers of delivery number ``n`` (a new message id per ``n``) for an
adapter, given the endpoint's public URL and secret. The shapes follow each
provider's documented fields; the test fixtures (``tests/fixtures/providers``)
hold fuller ones.
"""

from __future__ import annotations

import base64
import json
import time
from urllib.parse import urlencode

from . import mailgun, twilio

BOUNDARY = "convdbSampleBoundary"
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


def basic_header(secret: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(secret.encode()).decode()}


def multipart(fields: list[tuple], boundary: str = BOUNDARY) -> bytes:
    """``fields``: (name, text) or (name, bytes, filename, content type)."""
    out = []
    for item in fields:
        if len(item) == 2:
            head = f'Content-Disposition: form-data; name="{item[0]}"\r\n\r\n'
            value = item[1].encode() if isinstance(item[1], str) else item[1]
        else:
            head = (
                f'Content-Disposition: form-data; name="{item[0]}"; filename="{item[2]}"\r\n'
                f"Content-Type: {item[3]}\r\n\r\n"
            )
            value = item[1]
        out.append(f"--{boundary}\r\n{head}".encode() + value + b"\r\n")
    return b"".join(out) + f"--{boundary}--\r\n".encode()


def twilio_request(url: str, token: str, n: int) -> tuple[bytes, dict]:
    sid = f"SM{n:032x}"
    params = [
        ("AccountSid", "AC" + "0" * 32),
        ("MessageSid", sid),
        ("SmsSid", sid),
        ("From", f"+1415555{n % 10_000:04d}"),
        ("To", "+12125550100"),
        ("Body", f"Can I move my appointment to Thursday? ({n})"),
        ("NumMedia", "1"),
        ("MediaUrl0", f"https://api.twilio.com/2010-04-01/Accounts/AC0/Messages/{sid}/Media/ME1"),
        ("MediaContentType0", "image/jpeg"),
        ("FromCountry", "US"),
        ("ToCountry", "US"),
    ]
    headers = {
        "content-type": "application/x-www-form-urlencoded",
        "x-twilio-signature": twilio.signature(token, url, params),
    }
    return urlencode(params).encode(), headers


def twilio_status_request(
    url: str,
    token: str,
    sid: str,
    word: str,
    *,
    error: str | None = None,
    customer_number: str = "+12125550100",
    contact_number: str = "+14155550123",
) -> tuple[bytes, dict]:
    """A Twilio status callback for the outbound message ``sid`` (the customer's number
    is ``From``), signed with ``token`` for ``url``."""
    params = [
        ("AccountSid", "AC" + "0" * 32),
        ("ApiVersion", "2010-04-01"),
        ("From", customer_number),
        ("MessageSid", sid),
        ("MessageStatus", word),
        ("SmsSid", sid),
        ("SmsStatus", word),
        ("To", contact_number),
    ]
    if error:
        params.append(("ErrorCode", error))
    headers = {
        "content-type": "application/x-www-form-urlencoded",
        "x-twilio-signature": twilio.signature(token, url, params),
    }
    return urlencode(params).encode(), headers


def sendgrid_request(secret: str, n: int, attachment: bytes | None = None) -> tuple[bytes, dict]:
    header_block = (
        f"Message-ID: <sample-{n}@mail.example.de>\nDate: Wed, 5 Nov 2025 09:00:01 +0100\n"
        "From: Jürgen Müller <juergen@example.de>\nTo: support@acme.example\n"
    )
    fields = [
        ("headers", header_block),
        ("from", "Jürgen Müller <juergen@example.de>"),
        ("to", "support@acme.example"),
        ("subject", "Grüße"),
        ("text", f"Grüße aus Köln! ({n})\n".encode("iso-8859-1")),
        ("envelope", json.dumps({"to": ["support@acme.example"], "from": "juergen@example.de"})),
        ("charsets", json.dumps({"text": "iso-8859-1", "from": "UTF-8", "subject": "UTF-8"})),
    ]
    if attachment is not None:
        fields.append(("attachment1", attachment, "plan.png", "image/png"))
    headers = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
    if secret:
        headers.update(basic_header(secret))
    return multipart(fields), headers


def mailgun_request(key: str, n: int, timestamp: int | None = None) -> tuple[bytes, dict]:
    timestamp = int(time.time()) if timestamp is None else timestamp
    token = f"{n:050x}"
    headers = [["Message-Id", f"<sample-{n}@mail.example.se>"], ["Subject", "Fotos"]]
    fields = [
        ("recipient", "support@acme.example"),
        ("sender", "zoe@example.se"),
        ("from", "Zoë Ångström <zoe@example.se>"),
        ("subject", "Fotos"),
        ("body-plain", f"Hier die Fotos. ({n})"),
        ("message-headers", json.dumps(headers)),
        ("timestamp", str(timestamp)),
        ("token", token),
        ("signature", mailgun.signature(key, str(timestamp), token)),
    ]
    return urlencode(fields).encode(), {"content-type": "application/x-www-form-urlencoded"}


def postmark_request(secret: str, n: int) -> tuple[bytes, dict]:
    doc = {
        "MessageID": f"00000000-0000-4000-8000-{n:012d}",
        "FromFull": {"Email": "joao@example.pt", "Name": "João Gonçalves"},
        "ToFull": [{"Email": "support@acme.example", "Name": ""}],
        "CcFull": [],
        "OriginalRecipient": "support@acme.example",
        "Subject": "Fatura nº 42",
        "Date": "Mon, 10 Nov 2025 10:00:00 +0000",
        "TextBody": f"Olá, segue a fatura. ({n})",
        "HtmlBody": "",
        "StrippedTextReply": "",
        "Headers": [{"Name": "Message-ID", "Value": f"<pm-sample-{n}@mail.example.pt>"}],
        "Attachments": [
            {
                "Name": "fatura.png",
                "Content": base64.b64encode(PNG).decode(),
                "ContentType": "image/png",
                "ContentLength": len(PNG),
            }
        ],
    }
    headers = {"content-type": "application/json", **basic_header(secret)}
    return json.dumps(doc).encode(), headers


def request(adapter: str, url: str, secret: str, n: int) -> tuple[bytes, dict]:
    """Delivery ``n`` of ``adapter`` to the endpoint at ``url`` (its public URL)."""
    if adapter == "twilio":
        return twilio_request(url, secret, n)
    if adapter == "sendgrid":
        return sendgrid_request(secret, n)
    if adapter == "mailgun":
        return mailgun_request(secret, n)
    if adapter == "postmark":
        return postmark_request(secret, n)
    raise ValueError(f"no sample for adapter {adapter!r}")


__all__ = ["multipart", "request", "twilio_status_request"]
