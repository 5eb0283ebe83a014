"""Benchmarks and the load generator (STYLE.md section 8); not part of the default test run."""
