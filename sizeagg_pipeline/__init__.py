"""sizeagg: database-size aggregates and sync sessions on Dagster.

The one `Definitions` is `sizeagg_pipeline.definitions.defs`. Importing this package
loads nothing else, so that the `sizeagg` command line can check the environment
(settings the Dagster layer reads at import time, the database) before it loads the
Dagster layer. The same `Definitions` is the package's attribute `all_defs`, loaded on
first access, so `dagster … -m sizeagg_pipeline` finds it (Dagster lists a module's
members with `dir`). It cannot be called `defs`: that is the subpackage defs/.
"""

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "all_defs":
        from .definitions import defs

        return defs
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), "all_defs"})
