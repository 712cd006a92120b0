"""Documentation tests: what the README and docs/ promise is what the code does."""
