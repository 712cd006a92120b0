"""Process tests: real worker and migrator processes, signals, crashes and concurrency."""
