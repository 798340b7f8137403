"""Tests of `sizeagg_pipeline/defs/forecast/`: the capacity forecast asset."""
