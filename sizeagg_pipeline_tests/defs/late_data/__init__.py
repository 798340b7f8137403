"""Tests of `sizeagg_pipeline/defs/late_data/`: the raw-data observation sensor."""
