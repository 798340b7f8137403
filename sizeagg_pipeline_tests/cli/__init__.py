"""Tests of `sizeagg_pipeline/cli/`: the `sizeagg` commands and their in-process execution."""
