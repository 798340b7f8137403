"""Dagster definitions of sizeagg, one folder per domain (loaded by `definitions.py`)."""
