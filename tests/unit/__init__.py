"""Unit tests: pure functions, no database and no processes."""
