"""The receiver's real app in this process (no tests in here): ``create_app`` on a real
database, driven by ``httpx`` over ASGI on one event loop, for tests that send many
requests (the fuzz test) or that need the app's own state."""

from __future__ import annotations

import asyncio
import dataclasses

import httpx

from convdb.serve.app import create_app
from convdb.serve.settings import ServeSettings


class InProcess:
    """``create_app(url)`` with ``settings`` (the defaults, changed by ``**changes``).

    Secrets are read from ``os.environ`` at request time, and the email adapters
    read the attachment settings when first used: set the environment first.
    """

    def __init__(self, url: str, **changes) -> None:
        settings = dataclasses.replace(ServeSettings(), **changes)
        self.app = create_app(url, settings=settings)
        self.receiver = self.app.state.receiver
        self.loop = asyncio.new_event_loop()
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://hooks.test"
        )
        self.run(self.receiver.startup())  # what the lifespan does: adapters, endpoints

    def run(self, coroutine):
        return self.loop.run_until_complete(coroutine)

    def post(self, path: str, content: bytes, headers: dict | None = None) -> httpx.Response:
        return self.run(self.client.post(path, content=content, headers=headers or {}))

    def get(self, path: str) -> httpx.Response:
        return self.run(self.client.get(path))

    def close(self) -> None:
        self.run(self.client.aclose())
        self.run(self.receiver.shutdown())
        self.loop.close()

    def __enter__(self) -> InProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


__all__ = ["InProcess"]
