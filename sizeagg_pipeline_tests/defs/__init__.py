"""Tests of `sizeagg_pipeline/defs/`, one folder per domain."""
