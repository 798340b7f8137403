"""core/schema.py: sizeagg's own tables and engines on PostgreSQL.

Column types, the partial unique index, the driver behind a bare `postgresql://`
URL, and the session settings every connection gets. That instants stay instants
through the `sessions` listing is in cli/test_main.py.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from sizeagg_pipeline.core import schema


@pytest.mark.postgres
def test_postgresql_column_types(postgresql_url: str) -> None:
    engine = schema.make_engine(postgresql_url)
    try:
        schema.create_missing(engine)
        with engine.connect() as conn:
            types = {
                (t, c): (d, p, s, default)
                for t, c, d, p, s, default in conn.execute(
                    sa.text(
                        "SELECT table_name, column_name, data_type, numeric_precision, numeric_scale, "
                        "column_default FROM information_schema.columns WHERE table_schema = 'public'"
                    )
                )
            }
            partial = conn.execute(
                sa.text(
                    "SELECT indexdef FROM pg_indexes WHERE indexname = 'uq_instance_size_stats_instance_date'"
                )
            ).scalar_one()
    finally:
        engine.dispose()
    percent = [
        ("database_size_aggregations", c)
        for c in ("size_change_percent", "data_size_change_percent", "log_size_change_percent", "growth_rate")
    ] + [
        ("instance_size_aggregations", c)
        for c in (
            "avg_database_count",
            "total_size_change_percent",
            "database_count_change_percent",
            "growth_rate",
        )
    ]
    for key in percent:
        assert types[key][:3] == ("numeric", 10, 2), key
    stamps = [k for k in types if k[1].endswith("_at")]
    assert len(stamps) >= 20
    assert {types[k][0] for k in stamps} == {"timestamp with time zone"}
    ids = [k for k in types if k[1] == "id"]
    assert len(ids) == 11  # the seven tables of the contract, the forecast's two, limits and alerts
    for key in ids:  # bigserial: auto-increments for plain-SQL writers too
        assert types[key][0] == "bigint" and types[key][3].startswith("nextval("), key
    assert types[("sync_instance_records", "sync_details")][0] == "jsonb"
    assert partial.endswith("WHERE (is_deleted = false)")  # the origin's predicate, verbatim


@pytest.mark.postgres
def test_a_bare_postgresql_url_uses_the_installed_driver(postgresql_url: str) -> None:
    """SQLAlchemy 2.1 would pick psycopg 3 for `postgresql://`, which is not installed."""
    bare = postgresql_url.replace("postgresql+psycopg2://", "postgresql://")
    engine = schema.make_engine(bare)
    try:
        assert engine.dialect.driver == "psycopg2"
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_every_session_has_temp_buffers_for_two_windows_of_groups(postgresql_url: str) -> None:
    """Set on connect (the server's default is 8MB), outside any transaction: a rollback keeps it."""
    engine = schema.make_engine(postgresql_url)
    try:
        for _ in range(2):  # a fresh connection each time
            with engine.connect() as conn:
                conn.execute(sa.text("CREATE TEMPORARY TABLE t (x integer)"))
                conn.rollback()
                assert conn.execute(sa.text("SHOW temp_buffers")).scalar_one() == schema.POSTGRES_TEMP_BUFFERS
                assert conn.execute(sa.text("SELECT current_database()")).scalar_one() in postgresql_url
            engine.dispose()
    finally:
        engine.dispose()
