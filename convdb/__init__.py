"""convdb: a Peewee-powered microframework that owns a PostgreSQL conversation database.

The public surface for applications and plugin authors is listed in
``__all__``; everything else is internal.
"""

from .config import Settings, load_settings, mask_url
from .db import ConvdbDatabase, connect, database, init
from .exceptions import (
    ConfigError,
    ConvdbError,
    DatabaseError,
    DedupCollisionError,
    MigrationError,
    PayloadError,
    PluginError,
    QueueError,
    TransientError,
)
from .plugins import Plugin

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "ConvdbDatabase",
    "ConvdbError",
    "DatabaseError",
    "DedupCollisionError",
    "MigrationError",
    "PayloadError",
    "Plugin",
    "PluginError",
    "QueueError",
    "Settings",
    "TransientError",
    "__version__",
    "connect",
    "database",
    "init",
    "load_settings",
    "mask_url",
]
