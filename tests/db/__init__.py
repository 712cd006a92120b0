"""Database tests: real PostgreSQL, in process; each test gets a fresh migrated copy."""
