"""Fixtures for every test directory: the engine harness's (tests/harness.py)."""
from harness import book_factory, ex, gated  # noqa: F401  (fixtures, registered by name)
