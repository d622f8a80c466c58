"""Benchmarks that can be rerun: ``make bench`` (``python -m bench``)."""
