"""One request never stalls the others (issue 16, item 3), through a real ``convdb serve``:
a 45 MiB unsigned form, a client that trickles its body, more connections than allowed."""

from __future__ import annotations

import os
import socket
import threading
import time
from email.message import EmailMessage

import httpx
import pytest

from convdb.testing import scalar

from ..serve_support import ServeProcess, add_endpoint, serving
from ..support import example

pytestmark = pytest.mark.slow


def poll_healthz(server: ServeProcess, until: threading.Event) -> list[float]:
    """Seconds each ``GET /healthz`` took, one every 100 ms until ``until`` is set."""
    took = []
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        while not until.is_set():
            started = time.perf_counter()
            assert client.get("/healthz").status_code == 200
            took.append(time.perf_counter() - started)
            until.wait(0.1)
    return took


def raw_mime(megabytes: int) -> bytes:
    """A SendGrid Inbound Parse form in raw MIME mode, the message carrying a file."""
    message = EmailMessage()
    message["From"] = "big@example.com"
    message["To"] = "support@acme.example"
    message["Subject"] = "a large file"
    message["Message-ID"] = "<big-raw-mime@example.com>"
    message.set_content("see the file")
    message.add_attachment(
        os.urandom(megabytes * 2**20),
        maintype="application",
        subtype="octet-stream",
        filename="big.bin",
    )
    parts = {"email": message.as_bytes(), "envelope": b'{"to": ["support@acme.example"]}'}
    return (
        b"".join(
            b'--B\r\nContent-Disposition: form-data; name="'
            + name.encode()
            + b'"\r\n\r\n'
            + value
            + b"\r\n"
            for name, value in parts.items()
        )
        + b"--B--\r\n"
    )


def test_healthz_answers_within_1_s_while_large_bodies_are_processed(db_url, tmp_path):
    """A 45 MiB unsigned Mailgun form (the form limit raised to 64 MiB, so the body
    really is read: its missing signature is found in the raw bytes, nothing is parsed
    on the loop), then a 27 MiB SendGrid raw MIME message (parsed on a thread)."""
    mailgun = add_endpoint(db_url, adapter="mailgun", secret_ref="env:TEST_MAILGUN_KEY")
    sendgrid = add_endpoint(db_url, provider_name="sg", adapter="sendgrid", secret_ref="none:")
    env = {
        "TEST_MAILGUN_KEY": "key-1",
        "CONVDB_SERVE_MAX_FORM_BODY": str(64 * 2**20),
        "CONVDB_ATTACHMENT_DIR": str(tmp_path / "attachments"),
    }
    form = b"from=a%40example.com&body-plain=" + b"%C3%A9" * (45 * 2**20 // 6)
    mime = raw_mime(20)
    assert len(form) > 45 * 10**6 and len(mime) > 27 * 10**6
    answers: list[httpx.Response] = []
    done = threading.Event()

    def send() -> None:
        try:
            with httpx.Client(base_url=server.base_url, timeout=120) as client:
                for path, body, content_type in (
                    (mailgun, form, "application/x-www-form-urlencoded"),
                    (sendgrid, mime, "multipart/form-data; boundary=B"),
                ):
                    answers.append(
                        client.post(path, content=body, headers={"content-type": content_type})
                    )
        finally:
            done.set()

    with ServeProcess(db_url, env=env) as server:
        assert server.healthy()
        sender = threading.Thread(target=send)
        sender.start()
        took = poll_healthz(server, done)
        sender.join()
        output = server.output
    assert [(a.status_code, a.json().get("error")) for a in answers] == [
        (401, "missing_signature"),
        (200, None),
    ]
    assert max(took) < 1.0, f"/healthz took up to {max(took):.2f} s over {len(took)} polls"
    assert "Traceback" not in output


def test_a_trickling_body_gets_408_while_others_are_served_and_connections_are_bounded(db_url):
    server, sender = serving(
        db_url, env={"CONVDB_SERVE_BODY_TIMEOUT": "2", "CONVDB_SERVE_MAX_CONNECTIONS": "6"}
    )
    host, port = server.base_url.removeprefix("http://").split(":")
    with server, server.client() as client:
        assert sender.post(client, example(message_id="warm")).status_code == 200
        # headers, then one byte of the body every 200 ms
        body, headers = sender.request(example(message_id="slow"))
        slow = socket.create_connection((host, int(port)))
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        start_line = f"POST {sender.path} HTTP/1.1\r\nhost: x\r\ncontent-length: {len(body)}\r\n"
        slow.sendall(f"{start_line}{head}\r\n".encode())
        started = time.perf_counter()
        answered: list[bytes] = []

        def trickle() -> None:
            slow.settimeout(0.2)
            for byte in body:
                try:
                    slow.sendall(bytes([byte]))
                    data = slow.recv(4096)
                except TimeoutError:
                    continue
                except OSError:
                    break  # the server closed the connection
                if data:
                    answered.append(data)
                break

        trickler = threading.Thread(target=trickle)
        trickler.start()
        served = [
            sender.post(client, example(message_id=f"meanwhile-{i}")).status_code for i in range(10)
        ]
        trickler.join(10)
        waited = time.perf_counter() - started
        slow.close()
        assert served == [200] * 10
        assert not trickler.is_alive() and waited < 5
        assert answered == [] or answered[0].startswith(b"HTTP/1.1 408"), answered
        # idle connections up to the limit: the next request gets 503, then service resumes
        idle = [socket.create_connection((host, int(port))) for _ in range(6)]
        time.sleep(0.3)
        over = sender.post(client, example(message_id="over"))
        for sock in idle:
            sock.close()
        time.sleep(0.3)
        after = sender.post(client, example(message_id="after"))
        assert (over.status_code, after.status_code) == (503, 200)
        assert server.stop() == 0
    assert "Traceback" not in server.output
    assert (
        scalar(db_url, "SELECT count(*) FROM inbound_events WHERE payload->>'message_id' = 'slow'")
        == 0
    )
