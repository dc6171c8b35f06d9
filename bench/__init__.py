"""Benchmarks (run from the repo root: `python -m bench.render_bench`)."""
