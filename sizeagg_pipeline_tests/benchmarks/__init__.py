"""Tests of `benchmarks/`: the aggregation benchmark runs and reports completely."""
