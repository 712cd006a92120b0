"""The floor of the receiver's CPU per webhook: an empty Starlette endpoint.

``python -m bench.serve_empty --port P`` serves it exactly as ``convdb serve``
serves the receiver (:func:`convdb.serve.server.run`: uvicorn, uvloop and
httptools when installed, the same options and logging), with no database
work: every POST reads its body and is answered 200 with a small JSON
document, like the receiver's acknowledgement. ``GET /healthz`` answers 200.
"""

from __future__ import annotations

import argparse

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

ANSWER = b'{"status":"stored"}'


async def webhook(request: Request) -> Response:
    await request.body()
    return Response(ANSWER, media_type="application/json")


async def healthz(request: Request) -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


def create_app() -> Starlette:
    return Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/{path:path}", webhook, methods=["POST"]),
        ]
    )


if __name__ == "__main__":
    from convdb.serve import server

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    # server.run checks the database the receiver would use (DATABASE_URL):
    # the same start-up, though this app never touches it.
    server.run("127.0.0.1", args.port, 1, app="bench.serve_empty:create_app")
