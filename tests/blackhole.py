"""A TCP proxy for tests (no tests in here) that can black-hole the connections it carries.

::

    with BlackHoleProxy("127.0.0.1", 5432) as proxy:
        url = proxy.url(db_url)          # the same database, through the proxy
        ...
        proxy.black_hole()               # existing connections go silent, both ways

It forwards bytes both ways until :meth:`BlackHoleProxy.black_hole`: from
then on, what either side of an existing connection sends is read and
dropped, and neither side is closed, so the kernels keep acknowledging and
nothing but an application's own deadline can tell (keepalives are
answered too). New connections are accepted and forwarded as before: the
fault of a wedged load balancer or a half-dead proxy.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from urllib.parse import urlsplit, urlunsplit


class BlackHoleProxy:
    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.setblocking(False)
        self.port = self.listener.getsockname()[1]
        self._selector = selectors.DefaultSelector()
        self._selector.register(self.listener, selectors.EVENT_READ, None)
        self._peers: dict[socket.socket, socket.socket] = {}
        self._silent: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closing = False
        self.accepted = 0
        self._thread = threading.Thread(target=self._run, name="black-hole proxy", daemon=True)
        self._thread.start()

    def url(self, url: str) -> str:
        """``url`` (a single-host TCP URL) through this proxy."""
        parts = urlsplit(url)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = (userinfo + "@" if userinfo else "") + f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    def black_hole(self) -> int:
        """Silence every connection open now (both ways); how many."""
        with self._lock:
            self._silent.update(self._peers)
            return len(self._peers) // 2

    def _run(self) -> None:
        while not self._closing:
            for key, _ in self._selector.select(0.1):
                if key.fileobj is self.listener:
                    self._accept()
                else:
                    self._pump(key.fileobj)

    def _accept(self) -> None:
        try:
            client, _ = self.listener.accept()
        except BlockingIOError:
            return
        try:
            server = socket.create_connection(self.upstream, timeout=5)
        except OSError:
            client.close()
            return
        self.accepted += 1
        with self._lock:
            for sock, peer in ((client, server), (server, client)):
                sock.setblocking(True)
                sock.settimeout(5)
                self._peers[sock] = peer
                self._selector.register(sock, selectors.EVENT_READ, None)

    def _pump(self, sock: socket.socket) -> None:
        try:
            data = sock.recv(65536)
        except OSError:
            data = b""
        with self._lock:
            silent = sock in self._silent
            peer = self._peers.get(sock)
        if silent:  # read and dropped; an end is not passed on either
            if not data:
                self._drop(sock, close_peer=False)
            return
        if not data:
            self._drop(sock, close_peer=True)
            return
        try:
            peer.sendall(data)
        except OSError:
            self._drop(sock, close_peer=True)

    def _drop(self, sock: socket.socket, *, close_peer: bool) -> None:
        with self._lock:
            peer = self._peers.pop(sock, None)
            self._silent.discard(sock)
            pairs = [sock]
            if close_peer and peer is not None:
                self._peers.pop(peer, None)
                self._silent.discard(peer)
                pairs.append(peer)
        for s in pairs:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(s)
            s.close()

    def close(self) -> None:
        self._closing = True
        self._thread.join(5)
        with self._lock:
            socks = list(self._peers)
            self._peers.clear()
        for sock in socks:
            sock.close()
        self.listener.close()
        self._selector.close()

    def __enter__(self) -> BlackHoleProxy:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
