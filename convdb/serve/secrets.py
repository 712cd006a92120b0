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
errors name the reference only.
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
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


class SecretUnavailable(ConfigError):
    """A secret reference that cannot be read now (unset variable, missing file)."""


@dataclass(frozen=True)
class SecretRef:
    scheme: str  # "env" or "file"
    target: str  # the variable name or the absolute path

    def __str__(self) -> str:
        return f"{self.scheme}:{self.target}"


def parse_ref(ref: str) -> SecretRef:
    """Check a reference's syntax; :class:`ConfigError` explains what is wrong."""
    hint = "Use env:VARIABLE_NAME or file:/absolute/path/to/secret."
    if ref == NO_SECRET:
        return SecretRef("none", "")
    if not isinstance(ref, str) or not ref or len(ref) > MAX_REF_LENGTH:
        raise ConfigError(f"a secret reference must be 1-{MAX_REF_LENGTH} characters", hint=hint)
    scheme, sep, target = ref.partition(":")
    if not sep or scheme not in ("env", "file"):
        raise ConfigError(f"secret reference {ref[:60]!r} must start with env: or file:", hint=hint)
    if scheme == "env" and not _ENV_NAME.match(target):
        raise ConfigError(f"{ref[:60]!r}: {target[:40]!r} is not an environment variable name")
    if scheme == "file" and ("\x00" in target or not Path(target).is_absolute()):
        raise ConfigError(f"{ref[:60]!r}: the path must be absolute", hint=hint)
    return SecretRef(scheme, target)


def read_secret(ref: str) -> str:
    """The secret ``ref`` points at, read now; :class:`SecretUnavailable` otherwise."""
    parsed = parse_ref(ref)
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


__all__ = ["NO_SECRET", "SecretRef", "SecretUnavailable", "parse_ref", "read_secret"]
