"""sizeagg: database-size aggregates and sync sessions on Dagster."""

from .definitions import defs

__all__ = ["defs"]
