"""convdb-tags: tags on conversations, an example convdb plugin.

Installing this distribution is all it takes: convdb finds :data:`plugin`
through the entry point ``tags`` in the group ``convdb.plugins``, migrates
``convdb_tags.migrations`` after the core (history table
``migratehistory_tags``) and hands ``conversation.tagged`` queue events to
:func:`convdb_tags.handlers.handle_tagged`, after every door checked them with
:func:`convdb_tags.handlers.check_tagged`.
"""

from convdb.plugins import Plugin

from .handlers import check_tagged, handle_tagged

plugin = Plugin(
    name="tags",
    migrations="convdb_tags.migrations",
    depends_on=["core"],
    handlers={"conversation.tagged": handle_tagged},
    validators={"conversation.tagged": check_tagged},
)

__all__ = ["check_tagged", "handle_tagged", "plugin"]
