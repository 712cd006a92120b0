"""The read queries the benchmarks time and ``tests/test_query_plans.py`` checks.

Both are what an application's two main screens run, through the analyst
views; each must walk one index and stop after 50 rows, at any scale.
"""

#: A customer's 50 most recently active conversations (``conversations_inbox_idx``).
INBOX_PAGE = """
SELECT conversation_id, customer_id, last_message_at, message_count, participant_count
  FROM conversation_overview
 WHERE customer_id = %s
 ORDER BY last_message_at DESC NULLS LAST, conversation_id DESC
 LIMIT 50
"""

#: The 50 latest messages of one conversation with their text and attachment
#: count (``messages_conversation_sent_at_idx``).
CONVERSATION_PAGE = """
SELECT message_id, direction, provider_id, sent_at, received_at, body_text,
       attachments_count
  FROM conversation_messages
 WHERE conversation_id = %s
 ORDER BY sent_at DESC, message_id DESC
 LIMIT 50
"""

#: Every conversation's overview row.
WHOLE_OVERVIEW = "SELECT * FROM conversation_overview"
