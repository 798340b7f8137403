"""sizeagg: database-size aggregates and sync sessions on Dagster.

The one `Definitions` is `sizeagg_pipeline.definitions.defs`. This package imports
nothing, so that the `sizeagg` command line can check the environment (settings the
Dagster layer reads at import time, the database) before it loads the Dagster layer.
"""
