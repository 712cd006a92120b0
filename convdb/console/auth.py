"""Logins, sessions, CSRF tokens and the login rate limit, all held in the console's memory.

- A login compares the password given with the configured ones (read now,
  through their references) in constant time: the console password opens an
  ``admin`` session, the read-only one a ``readonly`` session.
- A session is a random token in a cookie (``HttpOnly``, ``SameSite=Strict``,
  ``Secure`` when the request came over https); the console keeps only its
  SHA-256. It ends after ``session_minutes`` without a request, or
  ``session_hours`` after the login, or at logout. A restart ends them all.
- Each session has a CSRF token that every form carries; a POST whose token
  is not the session's (a stale page from an older session, a forged form)
  is refused with 403 before anything changes.
- Failed logins are counted per client address and in total over
  :data:`WINDOW` seconds; past ``login_attempts`` per address (or ten times
  that in total), logins are refused with 429 until the window moves on,
  without looking at the password.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field

ROLES = ("admin", "readonly")
#: Seconds over which failed logins are counted.
WINDOW = 300.0
#: Sessions kept at most (the oldest is dropped first).
MAX_SESSIONS = 1000
#: Longest password compared (a longer one is a failed login).
MAX_PASSWORD = 1024


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def check_password(given: str, configured: dict[str, str]) -> str | None:
    """The role whose password is ``given``, or None; every comparison is made."""
    if not given or len(given) > MAX_PASSWORD:
        return None
    digest = _digest(given)
    found = None
    for role in ROLES:
        expected = configured.get(role)
        if expected is not None and hmac.compare_digest(digest, _digest(expected)):
            found = found or role
    return found


def same_token(given: str | None, expected: str) -> bool:
    return bool(given) and hmac.compare_digest(given.encode(), expected.encode())


@dataclass
class Session:
    role: str
    csrf: str
    created: float
    seen: float
    flash: list[str] = field(default_factory=list)

    @property
    def can_act(self) -> bool:
        return self.role == "admin"


class Sessions:
    """Sessions by the SHA-256 of their token; thread-safe, bounded, expiring."""

    def __init__(self, idle_seconds: float, max_seconds: float, clock=time.monotonic) -> None:
        self.idle_seconds = idle_seconds
        self.max_seconds = max_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._by_hash: OrderedDict[bytes, Session] = OrderedDict()

    def create(self, role: str) -> tuple[str, Session]:
        """A new session of ``role``; its token (for the cookie) and the session."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}")
        token = secrets.token_urlsafe(32)
        now = self._clock()
        session = Session(role, secrets.token_urlsafe(32), now, now)
        with self._lock:
            self._by_hash[_digest(token)] = session
            while len(self._by_hash) > MAX_SESSIONS:
                self._by_hash.popitem(last=False)
        return token, session

    def get(self, token: str | None) -> Session | None:
        """The live session of ``token`` (its idle clock restarted), or None."""
        if not token or len(token) > 200:
            return None
        key = _digest(token)
        now = self._clock()
        with self._lock:
            session = self._by_hash.get(key)
            if session is None:
                return None
            if now - session.seen > self.idle_seconds or now - session.created > self.max_seconds:
                del self._by_hash[key]
                return None
            session.seen = now
            return session

    def end(self, token: str | None) -> None:
        if token:
            with self._lock:
                self._by_hash.pop(_digest(token), None)

    def __len__(self) -> int:
        return len(self._by_hash)


class LoginLimiter:
    """Failed logins per client address and in total, over :data:`WINDOW` seconds."""

    def __init__(self, per_address: int, clock=time.monotonic) -> None:
        self.per_address = per_address
        self.total = per_address * 10
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: dict[str, deque] = {}
        self._all: deque = deque()

    def _trim(self, queue: deque, now: float) -> None:
        while queue and now - queue[0] > WINDOW:
            queue.popleft()

    def retry_after(self, address: str) -> int:
        """Seconds until ``address`` may try again (0: it may now)."""
        now = self._clock()
        with self._lock:
            mine = self._failures.get(address, deque())
            self._trim(mine, now)
            self._trim(self._all, now)
            waits = []
            if len(mine) >= self.per_address:
                waits.append(WINDOW - (now - mine[0]))
            if len(self._all) >= self.total:
                waits.append(WINDOW - (now - self._all[0]))
            return int(max(waits) + 1) if waits else 0

    def failed(self, address: str) -> None:
        now = self._clock()
        with self._lock:
            if len(self._failures) > 10_000:  # many addresses: forget the idle ones
                for key in [k for k, q in self._failures.items() if not q or now - q[-1] > WINDOW]:
                    del self._failures[key]
            self._failures.setdefault(address, deque()).append(now)
            self._all.append(now)

    def succeeded(self, address: str) -> None:
        with self._lock:
            self._failures.pop(address, None)


__all__ = [
    "ROLES",
    "WINDOW",
    "LoginLimiter",
    "Session",
    "Sessions",
    "check_password",
    "same_token",
]
