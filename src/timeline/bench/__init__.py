"""The benchmark suite: ``python -m timeline.bench`` (see bench/README in the project README)."""
