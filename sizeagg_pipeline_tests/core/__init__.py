"""Tests of `sizeagg_pipeline/core/`: the Dagster-free aggregation, sessions, schema and forecast."""
