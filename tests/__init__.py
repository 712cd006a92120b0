"""convdb's test suite (see conftest.py for the layout)."""
