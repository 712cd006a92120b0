"""``conversation_tags``: which conversation carries which tag.

References the core's ``conversations``: deleting a conversation drops its
tags; a tag in use cannot be deleted.
"""

from convdb.sqlutil import run_sql

CONVERSATION_TAGS = """
CREATE TABLE conversation_tags (
    conversation_id  BIGINT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    tag_id           BIGINT NOT NULL REFERENCES tags (id) ON DELETE RESTRICT,
    tagged_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (conversation_id, tag_id)
)
"""

TAG_INDEX = "CREATE INDEX conversation_tags_tag_id_idx ON conversation_tags (tag_id)"


def migrate(migrator, database, *, fake=False):
    run_sql(migrator, CONVERSATION_TAGS)
    run_sql(migrator, TAG_INDEX)


def rollback(migrator, database, *, fake=False):
    run_sql(migrator, "DROP TABLE conversation_tags")
