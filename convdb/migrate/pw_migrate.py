"""The bridge for plain ``pw_migrate``: what ``migrations/conf.py`` hands it.

``pw_migrate`` executes ``migrations/conf.py``, which sets ``DATABASE =
pw_migrate_database()``: a connection that already holds convdb's migration
lock, opened from ``--database``, ``DATABASE_URL``/``.env`` or the embedded
server, with a one-paragraph error instead of a traceback. ``pw_migrate
create`` is patched to number a new module after the highest one.
"""

from __future__ import annotations

import sys

import peewee

from . import _open
from .lock import MigrationDatabase


def _number_after_highest() -> None:
    """Make ``pw_migrate create`` number a new module after the highest one.

    peewee-migrate numbers by *counting* files, so a folder with a gap (001,
    002, 004) gets a second 004. ``convdb create`` and this patched
    ``pw_migrate create`` both use the highest number plus one.
    """
    from peewee_migrate.router import Router

    if getattr(Router.compile, "_convdb", False):
        return
    original = Router.compile

    def compile(self, name, migrate="", rollback="", num=None):
        if num is None:
            num = max((int(n[:3]) for n in self.todo), default=0)
        return original(self, name, migrate, rollback, num)

    compile._convdb = True
    Router.compile = compile


def pw_migrate_database(argv: list[str] | None = None) -> peewee.Database:
    """The ``DATABASE`` for ``migrations/conf.py`` when ``pw_migrate`` runs.

    Honours ``--database`` on the command line, then ``DATABASE_URL`` (or
    ``.env``), then the embedded server. Checks every setting first, and
    connects at once, so the migration lock is held before pw_migrate reads
    its history; a bad setting or URL stops with a one-paragraph error (no
    password, whatever the URL's form) instead of a traceback. ``pw_migrate
    create`` does not need a database: it gets an unconnected one.
    """
    from ..config import load_settings
    from ..dburl import redact, redact_log_records
    from ..exceptions import ConvdbError

    argv = list(sys.argv if argv is None else argv)
    url = None
    for i, arg in enumerate(argv):
        if arg == "--database" and i + 1 < len(argv):
            url = argv[i + 1]
        elif arg.startswith("--database="):
            url = arg.split("=", 1)[1]
    _number_after_highest()
    redact_log_records()
    try:
        settings = load_settings()
        if "create" in argv[1:2] and "--auto" not in argv:
            url = url or settings.database_url
            return MigrationDatabase(url) if url else peewee.PostgresqlDatabase(None)
        return _open(url)
    except ConvdbError as exc:
        print(redact(f"Error: {exc}", url), file=sys.stderr)
        raise SystemExit(1) from None
