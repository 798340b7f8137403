"""Dagster resources: the application database, configured by `SIZEAGG_DATABASE_URL`."""

from __future__ import annotations

import dagster as dg
import sqlalchemy as sa
from pydantic import PrivateAttr

from .core.schema import make_engine


class AppDatabase(dg.ConfigurableResource):
    """The database holding the raw stats, the aggregates and the sessions.

    The engine is created on first use, so the same resource serves assets (set up
    per run) and sensors (evaluated per tick) alike.
    """

    url: str

    _engine: sa.Engine | None = PrivateAttr(default=None)

    @property
    def engine(self) -> sa.Engine:
        if self._engine is None:
            self._engine = make_engine(self.url)
        return self._engine

    @property
    def backend(self) -> str:
        return sa.make_url(self.url).get_backend_name()

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
