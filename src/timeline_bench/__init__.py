"""The benchmark suite: ``python -m timeline_bench`` (see bench/README in the project README)."""
