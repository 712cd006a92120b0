"""The local attachment store's delete, as erasure uses it: bytes stored again since
the erasure started are kept."""

from __future__ import annotations

import datetime as dt
import os
import time

from convdb.attachments import AttachmentSettings, LocalStore


def test_delete_removes_bytes_nobody_stored_again(tmp_path):
    store = LocalStore(AttachmentSettings(directory=tmp_path))
    stored = store.put(b"the person's file", "text/plain", "a.txt")
    old = time.time() - 60
    os.utime(store.path_of(stored.sha256), (old, old))
    assert store.delete(stored.url, not_after=dt.datetime.now(dt.UTC))
    assert not store.path_of(stored.sha256).exists()
    assert not store.delete(stored.url)  # already gone
    assert list((tmp_path / "tmp").iterdir()) == []  # nothing left aside


def test_bytes_committed_again_during_an_erasure_are_kept(tmp_path):
    store = LocalStore(AttachmentSettings(directory=tmp_path))
    stored = store.put(b"shared bytes", "text/plain", "a.txt")
    old = time.time() - 60
    os.utime(store.path_of(stored.sha256), (old, old))
    erasure_started = dt.datetime.now(dt.UTC)
    time.sleep(0.01)
    again = store.put(b"shared bytes", "text/plain", "b.txt")  # a request storing the same file
    assert again.url == stored.url
    assert not store.delete(stored.url, not_after=erasure_started)
    assert store.path_of(stored.sha256).read_bytes() == b"shared bytes"
