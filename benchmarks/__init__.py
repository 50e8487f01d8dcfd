"""Lumiflow benchmarks: see benchmarks/README.md and ``python benchmarks/run.py --help``."""
