"""The attachment store: where the bytes of attachments that arrive inside a webhook go.

SendGrid, Mailgun and Postmark post an email's files with the email; Twilio
only links to media it keeps. Files that arrive as bytes are never dropped:
the adapter streams them into the store, and the canonical event refers to
them by URL, with their content type and size::

    {"url": "convdb-attachment://sha256/9f86d0...", "content_type": "image/png",
     "size": 52134, "filename": "plan.png"}

The URL names the content, not a place: ``convdb-attachment://sha256/<hex>``
(:data:`STORE_SCHEME`, :func:`content_url`), so moving the bytes to another
store never rewrites the database, and the same file sent twice is stored
once. Ingestion accepts this scheme beside ``http`` and ``https``
(:data:`URL_SCHEMES`). :meth:`AttachmentStore.open` gives the bytes back.

Writing is two-phase, so a request that turns out forged (Mailgun's
signature arrives in the form, after the files) leaves nothing behind::

    with Staging(store) as staging:           # aborts what is not committed
        writer = staging.begin("image/png", "plan.png")
        for chunk in chunks:
            writer.write(chunk)               # AttachmentTooLarge past the limit
        ...                                   # verify the request
        stored = staging.commit()             # [StoredAttachment, ...]

The default store, :class:`LocalStore`, is a content-addressed folder
(``CONVDB_ATTACHMENT_DIR``): each file is written to a temporary file,
flushed to disk, and renamed into ``sha256/ab/cd/<hex>``, so a half-written
file is never visible under its final name.

A store that cannot be written now (a full or read-only disk, a folder
gone, an object store away) raises :class:`StoreUnavailable`: the receiver
answers 503 with ``Retry-After`` (the sender retries once it is fixed), and
its ``/healthz`` reports the store through :meth:`AttachmentStore.check`.

Another store (S3-compatible, say) is chosen with ``CONVDB_ATTACHMENT_STORE=
module:attr``, naming an :class:`AttachmentStore` subclass (or factory)
called with the :class:`AttachmentSettings`. A setting rather than a
``Plugin`` field: a deployment has exactly one store, chosen by its
operator, and installing a plugin must never move where the bytes go.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import importlib
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from .config import DEFAULT_DATA_DIR, load_settings
from .exceptions import ConfigError, ConvdbError

#: The scheme of stored attachments' URLs (``convdb-attachment://sha256/<hex>``).
STORE_SCHEME = "convdb-attachment"
#: Every scheme an attachment URL of a canonical payload may use.
URL_SCHEMES = ("http", "https", STORE_SCHEME)
URL_PREFIX = f"{STORE_SCHEME}://sha256/"
_URL_RE = re.compile(r"^" + re.escape(URL_PREFIX) + r"([0-9a-f]{64})$")
MAX_NAME_LENGTH = 255
MAX_CONTENT_TYPE_LENGTH = 255


class AttachmentTooLarge(ConvdbError):
    """An attachment is over the configured limit (the receiver answers 413)."""


class StoreUnavailable(ConvdbError):
    """The store cannot be written now (the receiver answers 503 with ``Retry-After``)."""


def content_url(sha256_hex: str) -> str:
    """The URL of the bytes whose SHA-256 is ``sha256_hex``."""
    return URL_PREFIX + sha256_hex


def digest_of(url: str) -> str | None:
    """The SHA-256 (hex) a stored attachment's URL names, or None for any other URL."""
    match = _URL_RE.match(url)
    return match.group(1) if match else None


@dataclass(frozen=True)
class AttachmentSettings:
    store: str = "local"
    directory: Path = Path(DEFAULT_DATA_DIR) / "attachments"
    max_bytes: int = 25 * 1024 * 1024  # one attachment
    max_message: int = 50 * 1024 * 1024  # a whole webhook body that carries attachments


def load_attachment_settings(env_file: Path | None = None) -> AttachmentSettings:
    """The store's view of :func:`convdb.config.load_settings` (which checks them all)."""
    settings = load_settings(env_file)
    return AttachmentSettings(
        store=settings.attachment_store,
        directory=settings.attachment_dir or settings.data_dir / "attachments",
        max_bytes=settings.attachment_max_bytes,
        max_message=settings.attachment_max_message,
    )


@dataclass(frozen=True)
class StoredAttachment:
    """Bytes in the store: what a canonical payload's attachment entry says of them."""

    url: str
    sha256: str
    size: int
    content_type: str | None = None
    filename: str | None = None

    def entry(self) -> dict:
        """The canonical payload's attachment entry."""
        item = {"url": self.url, "content_type": self.content_type, "size": self.size}
        if self.filename:
            item["filename"] = self.filename
        return item


class AttachmentWriter:
    """One attachment being written; :meth:`commit` makes it visible, :meth:`abort` drops it."""

    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def commit(self) -> StoredAttachment:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError


class AttachmentStore:
    """Where attachment bytes go. Subclasses implement :meth:`begin` and :meth:`open`.

    ``begin`` returns a writer whose ``write`` raises :class:`AttachmentTooLarge`
    past ``max_bytes``. ``begin``, ``write`` and ``commit`` raise
    :class:`StoreUnavailable` (or ``OSError``) when the bytes cannot be
    written now. Stores are shared by threads: keep per-file state in the
    writer.
    """

    def __init__(self, settings: AttachmentSettings) -> None:
        self.settings = settings
        self.max_bytes = settings.max_bytes

    def begin(self, content_type: str | None, filename: str | None) -> AttachmentWriter:
        raise NotImplementedError

    def open(self, url: str) -> BinaryIO:
        """The stored bytes of ``url``; ``FileNotFoundError`` when they are not here."""
        raise NotImplementedError

    def check(self) -> None:
        """Raise :class:`StoreUnavailable` when the store cannot be written now (the
        receiver's ``/healthz`` calls it, on a thread). The default checks nothing."""

    def delete(self, url: str, not_after: dt.datetime | None = None) -> bool:
        """Remove the bytes of ``url`` (erasure and retention, :mod:`convdb.privacy.gc`);
        whether they were removed. Bytes committed again after ``not_after``
        (a request storing the same file meanwhile) are kept. The default
        removes nothing: a store of a plugin's deletes by overriding this."""
        return False

    def put(self, data: bytes, content_type: str | None, filename: str | None):
        """Store ``data`` at once (begin, write, commit)."""
        writer = self.begin(content_type, filename)
        try:
            writer.write(data)
            return writer.commit()
        except BaseException:
            writer.abort()
            raise


class LocalStore(AttachmentStore):
    """A content-addressed folder: ``<directory>/sha256/ab/cd/<hex>``, temporaries in ``tmp/``."""

    def __init__(self, settings: AttachmentSettings) -> None:
        super().__init__(settings)
        self.root = Path(settings.directory)

    def path_of(self, sha256_hex: str) -> Path:
        return self.root / "sha256" / sha256_hex[:2] / sha256_hex[2:4] / sha256_hex

    def begin(self, content_type: str | None, filename: str | None) -> AttachmentWriter:
        return _LocalWriter(self, clean_type(content_type), clean_name(filename))

    def open(self, url: str) -> BinaryIO:
        digest = digest_of(url)
        if digest is None:
            raise FileNotFoundError(f"not a stored attachment URL: {url[:80]!r}")
        return open(self.path_of(digest), "rb")

    def delete(self, url: str, not_after: dt.datetime | None = None) -> bool:
        """Moved aside first, then looked at: a writer that committed the same bytes
        before the move touched the file (kept, put back); one that commits
        after it finds no file and writes its own."""
        digest = digest_of(url)
        if digest is None:
            return False
        final = self.path_of(digest)
        (self.root / "tmp").mkdir(parents=True, exist_ok=True)
        aside = self.root / "tmp" / f"erase-{digest}-{os.getpid()}"
        try:
            os.replace(final, aside)
        except FileNotFoundError:
            return False
        touched = dt.datetime.fromtimestamp(aside.stat().st_mtime, dt.UTC)
        if not_after is not None and touched > not_after:
            with contextlib.suppress(FileExistsError):
                os.link(aside, final)  # a writer may already have put its own copy back
            aside.unlink()
            return False
        aside.unlink()
        return True

    def check(self) -> None:
        """A file can be created in the store's folder (and is removed)."""
        with _writing(self):
            tmp = self.root / "tmp"
            tmp.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(dir=tmp, prefix="check-")
            os.close(fd)
            os.unlink(name)


@contextlib.contextmanager
def _writing(store: LocalStore):
    """``OSError`` (a full, read-only or missing disk) as :class:`StoreUnavailable`."""
    try:
        yield
    except OSError as exc:
        raise StoreUnavailable(
            f"the attachment store {store.root} cannot be written: {exc.strerror or exc}"
        ) from exc


class _LocalWriter(AttachmentWriter):
    def __init__(self, store: LocalStore, content_type: str | None, filename: str | None) -> None:
        self._store = store
        self._content_type = content_type
        self._filename = filename
        self._hash = hashlib.sha256()
        self._size = 0
        tmp = store.root / "tmp"
        with _writing(store):
            tmp.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(dir=tmp, prefix="part-")
        self._path = Path(name)
        self._file = os.fdopen(fd, "wb")

    def write(self, data: bytes) -> None:
        self._size += len(data)
        if self._size > self._store.max_bytes:
            raise AttachmentTooLarge(
                f"attachment {self._filename or ''!r} is over {self._store.max_bytes} bytes"
            )
        self._hash.update(data)
        with _writing(self._store):
            self._file.write(data)

    def commit(self) -> StoredAttachment:
        digest = self._hash.hexdigest()
        final = self._store.path_of(digest)
        with _writing(self._store):
            if _touch(final):  # stored once: the same bytes are already there, durably
                self._file.close()
                self._path.unlink(missing_ok=True)
            else:
                self._file.flush()
                os.fsync(self._file.fileno())  # the bytes are on disk before the event says so
                self._file.close()
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(self._path, final)
                _fsync_dir(final.parent)
        return StoredAttachment(
            content_url(digest), digest, self._size, self._content_type, self._filename
        )

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            if not self._file.closed:
                self._file.close()
            self._path.unlink(missing_ok=True)


def _touch(path: Path) -> bool:
    """Whether ``path`` exists; its time set to now, so an erasure removing the same
    bytes at this moment keeps them (:meth:`LocalStore.delete`)."""
    try:
        os.utime(path)
    except FileNotFoundError:
        return False
    return True


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Staging:
    """Writers of one request: :meth:`commit` keeps them all, leaving the block drops the rest.

    ``store`` is the store, or a function that returns it, called at the first
    :meth:`begin` (so a store that cannot even be built fails there, as
    :class:`StoreUnavailable`, and a request without files never needs it).
    """

    def __init__(self, store: AttachmentStore | Callable[[], AttachmentStore]) -> None:
        self._store = store
        self._writers: list[AttachmentWriter] = []
        self._done = False

    @property
    def store(self) -> AttachmentStore:
        if not isinstance(self._store, AttachmentStore):
            try:
                self._store = self._store()
            except ConfigError as exc:
                raise StoreUnavailable(exc.message) from exc
        return self._store

    def begin(self, content_type: str | None, filename: str | None) -> AttachmentWriter:
        try:
            writer = self.store.begin(content_type, filename)
        except OSError as exc:  # a store of a plugin's that does not say StoreUnavailable
            raise StoreUnavailable(f"the attachment store cannot be written: {exc}") from exc
        self._writers.append(writer)
        return writer

    def commit(self) -> list[StoredAttachment]:
        try:
            stored = [writer.commit() for writer in self._writers]
        except OSError as exc:
            raise StoreUnavailable(f"the attachment store cannot be written: {exc}") from exc
        self._done = True
        return stored

    def abort(self) -> None:
        if not self._done:
            for writer in self._writers:
                writer.abort()
            self._done = True

    def __enter__(self) -> Staging:
        return self

    def __exit__(self, *exc) -> None:
        self.abort()


def clean_name(filename: str | None) -> str | None:
    """A file name as sent, minus any path and control characters, at most 255 characters."""
    if not filename:
        return None
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable())[:MAX_NAME_LENGTH].strip()
    return name or None


def clean_type(content_type: str | None) -> str | None:
    """A media type (``type/subtype``, lowercased, without parameters), or None."""
    if not content_type:
        return None
    media = content_type.split(";", 1)[0].strip().lower()
    if len(media) > MAX_CONTENT_TYPE_LENGTH or not re.match(
        r"^[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+$", media
    ):
        return None
    return media


_stores: dict[AttachmentSettings, AttachmentStore] = {}


def get_store(settings: AttachmentSettings | None = None) -> AttachmentStore:
    """The configured store (one per process and settings)."""
    settings = settings or load_attachment_settings()
    store = _stores.get(settings)
    if store is None:
        store = _stores[settings] = _build(settings)
    return store


def _build(settings: AttachmentSettings) -> AttachmentStore:
    if settings.store == "local":
        return LocalStore(settings)
    module_name, sep, attr = settings.store.partition(":")
    if not sep:
        raise ConfigError(
            f"CONVDB_ATTACHMENT_STORE={settings.store[:80]!r} is neither 'local' nor module:attr"
        )
    try:
        factory = getattr(importlib.import_module(module_name), attr)
        store = factory(settings)
    except Exception as exc:
        raise ConfigError(
            f"CONVDB_ATTACHMENT_STORE={settings.store[:80]!r} cannot be loaded: {exc}"
        ) from exc
    if not isinstance(store, AttachmentStore):
        raise ConfigError(f"CONVDB_ATTACHMENT_STORE={settings.store[:80]!r} is no AttachmentStore")
    return store


__all__ = [
    "STORE_SCHEME",
    "URL_SCHEMES",
    "AttachmentSettings",
    "AttachmentStore",
    "AttachmentTooLarge",
    "AttachmentWriter",
    "LocalStore",
    "Staging",
    "StoreUnavailable",
    "StoredAttachment",
    "clean_name",
    "clean_type",
    "content_url",
    "digest_of",
    "get_store",
    "load_attachment_settings",
]
