"""Benchmarks: each stage against its floor, measured side by side in one run (`make bench`, `python -m bench`).

Absolute times drift on shared machines; every figure is a ratio or a difference of two
measurements taken in the same run, on the same embedded PostgreSQL.
"""
