"""Indexes for the joins and filters the views, the ingestion and the analysts use.

PostgreSQL never indexes a foreign-key column by itself: every one that is
joined or filtered gets its own index here.
"""

from convdb.sqlutil import run_sql

INDEXES = """
CREATE INDEX messages_conversation_sent_at_idx
    ON messages (conversation_id, sent_at DESC, id DESC);
CREATE INDEX messages_provider_id_idx ON messages (provider_id);
CREATE INDEX messages_email_body_id_idx ON messages (email_body_id);
CREATE INDEX messages_xms_body_id_idx ON messages (xms_body_id);
CREATE INDEX conversation_participants_contact_id_idx ON conversation_participants (contact_id);
CREATE INDEX endpoint_mappings_customer_kind_hash_idx
    ON endpoint_mappings (customer_id, kind, hash);
CREATE INDEX endpoint_mappings_provider_id_idx ON endpoint_mappings (provider_id);
CREATE INDEX providers_customer_id_idx ON providers (customer_id);
CREATE INDEX contacts_customer_id_idx ON contacts (customer_id);
CREATE INDEX conversations_customer_id_idx ON conversations (customer_id);
CREATE INDEX attachments_url_id_idx ON attachments (url_id);
CREATE INDEX message_attachments_attachment_id_idx ON message_attachments (attachment_id)
"""

DROP = """
DROP INDEX messages_conversation_sent_at_idx, messages_provider_id_idx,
           messages_email_body_id_idx, messages_xms_body_id_idx,
           conversation_participants_contact_id_idx, endpoint_mappings_customer_kind_hash_idx,
           endpoint_mappings_provider_id_idx, providers_customer_id_idx,
           contacts_customer_id_idx, conversations_customer_id_idx, attachments_url_id_idx,
           message_attachments_attachment_id_idx
"""


def migrate(migrator, database, *, fake=False):
    run_sql(migrator, INDEXES)


def rollback(migrator, database, *, fake=False):
    run_sql(migrator, DROP)
