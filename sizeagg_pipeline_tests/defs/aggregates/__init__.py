"""Tests of `sizeagg_pipeline/defs/aggregates/`: partitions, assets, checks, lineage."""
