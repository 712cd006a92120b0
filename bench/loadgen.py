"""Load for the receiver: pre-signed Standard Webhooks requests, sent by wrk or by Python.

Every request is signed before the clock starts (a unique ``webhook-id``
each), so the load generator only writes bytes. ``wrk`` (packaged by the OS)
replays them from a file through a Lua script; the Python generator
(asyncio, raw keep-alive connections) needs nothing but Python and reports
its own CPU use, to show whether it was the bottleneck.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
import statistics
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from convdb.serve.standard import sign

from .report import percentile

WRK_SCRIPT = r"""
local requests, i = {}, 0
init = function(args)
  local f = assert(io.open(args[1], "rb"))
  local data = f:read("*a")
  f:close()
  for chunk in string.gmatch(data, "(.-)%z") do requests[#requests + 1] = chunk end
  i = math.random(#requests)
end
request = function()
  i = i + 1
  if i > #requests then i = 1 end
  return requests[i]
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %d %d\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99),
    summary.errors.status + summary.errors.connect + summary.errors.read
      + summary.errors.write + summary.errors.timeout))
end
"""


def payload(i: int) -> dict:
    return {
        "customer": {"key": "bench", "name": "Bench"},
        "provider": {"kind": "sms", "name": "twilio"},
        "direction": "inbound",
        "message_id": f"bench-{i}",
        "from": {"address": f"+1415555{i % 10_000:04d}"},
        "to": [{"address": "+12125550100"}],
        "body": f"message {i % 50}",
        "sent_at": "2025-11-05T10:00:00+02:00",
    }


def presigned(path: str, secret: str, count: int, prefix: str, port: int) -> list[bytes]:
    """``count`` raw HTTP/1.1 requests, each a new delivery signed now."""
    now = int(time.time())
    out = []
    for i in range(count):
        body = json.dumps({"type": "message.received", "data": payload(i)}).encode()
        headers = sign(secret, f"msg_{prefix}_{i}", now, body)
        lines = [
            f"POST {path} HTTP/1.1",
            f"Host: 127.0.0.1:{port}",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
        ]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        out.append(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    return out


def latencies(port: int, requests: list[bytes], clients: int) -> list[float]:
    """Milliseconds per request, ``clients`` threads each sending its share in turn."""
    results: list[float] = []
    lock = threading.Lock()

    def client(share: list[bytes]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine = []
        for raw in share:
            head, body = raw.split(b"\r\n\r\n", 1)
            first, *header_lines = head.decode().split("\r\n")
            headers = dict(line.split(": ", 1) for line in header_lines)
            started = time.perf_counter()
            conn.request("POST", first.split()[1], body=body, headers=headers)
            answer = conn.getresponse()
            answer.read()
            mine.append((time.perf_counter() - started) * 1000)
            if answer.status != 200:
                raise RuntimeError(f"bench request answered {answer.status}")
        conn.close()
        with lock:
            results.extend(mine)

    threads = [
        threading.Thread(target=client, args=(requests[i::clients],)) for i in range(clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@dataclass
class Load:
    rate: float  # answered requests per second
    p50_ms: float
    p99_ms: float
    errors: int
    tool: str
    client_cpu: float | None = None  # the generator's CPU seconds per wall second
    count: int = 0  # requests answered (within the load's time)


def python_load(port: int, requests: list[bytes], connections: int, seconds: float) -> Load:
    """``connections`` keep-alive connections sending ``requests`` in turn for ``seconds``."""
    cpu0, wall0 = time.process_time(), time.perf_counter()
    times, errors = asyncio.run(_python_load(port, requests, connections, seconds))
    wall = time.perf_counter() - wall0
    return Load(
        len(times) / seconds,
        percentile(times, 50),
        percentile(times, 99),
        errors,
        "python",
        (time.process_time() - cpu0) / wall,
        len(times),
    )


async def _python_load(port, requests, connections, seconds):
    times: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    counter = iter(range(10**9))

    async def connection() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while time.perf_counter() < deadline:
            raw = requests[next(counter) % len(requests)]
            started = time.perf_counter()
            writer.write(raw)
            status = int((await reader.readline()).split()[1])
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            if time.perf_counter() <= deadline:
                times.append((time.perf_counter() - started) * 1000)
            errors += status != 200
        writer.close()

    await asyncio.gather(*(connection() for _ in range(connections)))
    return times, errors


def wrk_load(port: int, requests: list[bytes], connections: int, seconds: float) -> Load:
    """The same load with wrk (two threads); the requests are replayed from a file."""
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "requests.bin"
        data.write_bytes(b"".join(r + b"\0" for r in requests))
        script = Path(folder) / "replay.lua"
        script.write_text(WRK_SCRIPT)
        out = subprocess.run(
            [
                "wrk",
                "-t2",
                f"-c{connections}",
                f"-d{max(1, round(seconds))}s",
                "-s",
                str(script),
                f"http://127.0.0.1:{port}",
                "--",
                str(data),
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=True,
        ).stdout
    match = re.search(r"RESULT (\d+) (\d+) (\d+) (\d+) (\d+)", out)
    if not match:
        raise RuntimeError(f"wrk printed no result:\n{out}")
    count, duration_us, p50, p99, errors = map(int, match.groups())
    return Load(count / (duration_us / 1e6), p50 / 1000, p99 / 1000, errors, "wrk", count=count)


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and its children, in MB."""
    total = 0.0
    for child in [pid, *_children(pid)]:
        try:
            text = Path(f"/proc/{child}/status").read_text()
        except OSError:
            continue
        total += int(re.search(r"VmRSS:\s+(\d+)", text).group(1)) / 1024
    return total


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) ``pid`` and its children have used so far, in seconds."""
    total = 0
    for child in [pid, *_children(pid)]:
        try:
            fields = Path(f"/proc/{child}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    try:
        found = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [int(c) for c in found]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


__all__ = ["Load", "cpu_seconds", "latencies", "presigned", "python_load", "rss_mb", "wrk_load"]
