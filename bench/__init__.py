"""Benchmarks (run by hand, never by pytest): `.venv/bin/python -m bench.apply_page`."""
