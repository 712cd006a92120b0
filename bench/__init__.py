"""convdb's benchmarks: ``python -m bench`` (``make bench``, ``make bench-smoke``).

Not part of the installed package; see ``bench/runner.py`` for what is measured.
"""
