"""Tests of `sizeagg_pipeline/defs/schedule/`: the daily tick."""
