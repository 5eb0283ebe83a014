"""Fixtures for every test directory: the engine harness's (tests/harness.py)."""
from harness import book_factory, ex, gated

__all__ = ["book_factory", "ex", "gated"]      # registered by pytest by name
