"""Secret references: where an endpoint's signing secret lives, never the secret.

``providers.credentials_ref`` holds a reference, read each time a request
arrives, so a rotated secret needs no restart:

``env:NAME``
    The environment variable ``NAME`` of the server process.
``file:/ABSOLUTE/PATH``
    The file's content, surrounding whitespace (a trailing newline) removed;
    Docker and Kubernetes secrets (``/run/secrets/...``) are files.

``none:``
    No secret: the endpoint is authenticated by its URL's unguessable token
    alone. Only adapters that allow it accept it (SendGrid Inbound Parse,
    which cannot sign); for every other adapter reading it fails, so such an
    endpoint never accepts a write.

Neither the secret nor any part of it is ever stored, printed or logged;
errors name the reference only. A reference that is not well formed is
never echoed either: it may be a secret typed in its place
(``--secret-ref 'postmark:pw'``, ``--secret-ref whsec_...``). For the same
reason an ``env:`` name that looks like a secret (a known secret prefix such
as ``whsec_``, or a long run of mixed letters and digits without ``_``) is
refused (:func:`looks_like_a_secret`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..exceptions import ConfigError

MAX_REF_LENGTH = 1024
#: The reference of an endpoint authenticated by its path token alone.
NO_SECRET = "none:"
MAX_SECRET_BYTES = 64 * 1024
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}\Z")
#: Prefixes of secrets, never of a variable's name: Standard Webhooks, Stripe-style
#: keys, Mailgun's keys, SendGrid's API keys, GitHub tokens.
SECRET_PREFIXES = ("whsec_", "sk_", "rk_", "key-", "sg.", "ghp_", "gho_", "xox")
_TOKEN_LIKE = re.compile(r"[A-Za-z0-9+/=.-]{20,}")


class SecretUnavailable(ConfigError):
    """A secret reference that cannot be read now (unset variable, missing file)."""


@dataclass(frozen=True)
class SecretRef:
    scheme: str  # "env" or "file"
    target: str  # the variable name or the absolute path

    def __str__(self) -> str:
        return f"{self.scheme}:{self.target}"


def looks_like_a_secret(text: str) -> bool:
    """Does ``text`` look like a secret rather than a name (see the module docstring)?"""
    if text.lower().startswith(SECRET_PREFIXES):
        return True
    if "_" in text or not _TOKEN_LIKE.fullmatch(text):
        return False
    kinds = (any(c.islower() for c in text), any(c.isupper() for c in text))
    return any(c.isdigit() for c in text) and any(kinds)


def parse_ref(ref: str) -> SecretRef:
    """Check a reference's syntax; :class:`ConfigError` explains what is wrong, and
    never shows what was given (it may be a secret typed in place of a reference)."""
    hint = "Use env:VARIABLE_NAME or file:/absolute/path/to/secret."
    if ref == NO_SECRET:
        return SecretRef("none", "")
    if not isinstance(ref, str) or not ref or len(ref) > MAX_REF_LENGTH:
        raise ConfigError(f"a secret reference must be 1-{MAX_REF_LENGTH} characters", hint=hint)
    scheme, sep, target = ref.partition(":")
    if not sep or scheme not in ("env", "file"):
        raise ConfigError(
            "the secret reference must start with env: or file: (what was given is not "
            "shown: it may be the secret itself)",
            hint=hint + " Never pass the secret: put it in a variable or a file.",
        )
    if scheme == "env" and not _ENV_NAME.match(target):
        raise ConfigError(
            "the part after env: is not an environment variable name (letters, digits "
            "and _, not starting with a digit; not shown)",
            hint=hint,
        )
    if scheme == "env" and looks_like_a_secret(target):
        raise ConfigError(
            "the part after env: looks like a secret, not a variable's name (not shown)",
            hint="Put the secret in an environment variable of the server, and give env:ITS_NAME.",
        )
    if scheme == "file" and ("\x00" in target or not Path(target).is_absolute()):
        raise ConfigError("the path after file: must be absolute (not shown)", hint=hint)
    return SecretRef(scheme, target)


def shown_ref(ref: str | None) -> str:
    """``ref`` as it may be printed: itself when valid, else a placeholder."""
    if not ref:
        return "-"
    try:
        return str(parse_ref(ref)) if ref != NO_SECRET else NO_SECRET
    except ConfigError:
        return "(not a valid reference: not shown)"


def read_secret(ref: str) -> str:
    """The secret ``ref`` points at, read now; :class:`SecretUnavailable` otherwise
    (a stored reference that is not valid, stored before these checks, included)."""
    try:
        parsed = parse_ref(ref)
    except ConfigError as exc:
        raise SecretUnavailable(f"the secret reference is not valid: {exc.message}") from None
    if parsed.scheme == "none":
        raise SecretUnavailable(
            "secret reference none: names no secret, and this endpoint's adapter needs one"
        )
    if parsed.scheme == "env":
        value = os.environ.get(parsed.target)
        if value is None or not value.strip():
            raise SecretUnavailable(
                f"secret reference {parsed}: the variable is not set in the server's environment"
            )
        return value.strip()
    try:
        with open(parsed.target, "rb") as handle:
            data = handle.read(MAX_SECRET_BYTES + 1)
    except OSError as exc:
        raise SecretUnavailable(
            f"secret reference {parsed}: cannot read the file ({exc.strerror or exc})"
        ) from None
    if len(data) > MAX_SECRET_BYTES:
        raise SecretUnavailable(f"secret reference {parsed}: the file is over 64 KiB")
    try:
        value = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise SecretUnavailable(f"secret reference {parsed}: the file is not UTF-8") from None
    if not value:
        raise SecretUnavailable(f"secret reference {parsed}: the file is empty")
    return value


__all__ = [
    "NO_SECRET",
    "SecretRef",
    "SecretUnavailable",
    "looks_like_a_secret",
    "parse_ref",
    "read_secret",
    "shown_ref",
]
