"""The application database as a Dagster resource (`db` in every asset, check and sensor)."""

from __future__ import annotations

import dagster as dg
import sqlalchemy as sa
from pydantic import Field, PrivateAttr

from ..core.schema import make_engine
from ..core.settings import DATABASE_URL_VAR, database_url


class AppDatabase(dg.ConfigurableResource):
    """The database holding the raw stats, the aggregates and the sessions.

    The URL is not part of the deployment's config by default: it usually carries a
    password, and run config is shown in the UI. Left empty, it is read from the
    environment when first used (`SIZEAGG_DATABASE_URL`, else the embedded SQLite
    file of the quick start). The engine is created on first use, so the same
    resource serves assets (set up per run) and sensors (evaluated per tick) alike.
    """

    url: str = Field(
        default="",
        description=(
            f"SQLAlchemy URL; empty: ${DATABASE_URL_VAR}, else .sizeagg/sizeagg.db in the working directory"
        ),
    )

    _engine: sa.Engine | None = PrivateAttr(default=None)

    @property
    def engine(self) -> sa.Engine:
        if self._engine is None:
            self._engine = make_engine(self.url or database_url())
        return self._engine

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


defs = dg.Definitions(resources={"db": AppDatabase()})
