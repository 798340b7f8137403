"""Tests of `sizeagg_pipeline/defs/sessions/`: the session asset, gate, closer, failure sensors, janitor."""
