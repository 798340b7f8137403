"""The shipped PostgreSQL deployment end to end: dagster-webserver and dagster-daemon on
`deploy/dagster-postgres.yaml`, application tables on PostgreSQL too.

Runs are submitted through the webserver's GraphQL API, queued, dequeued by the daemon,
launched as their own processes, and their records land in PostgreSQL (no SQLite
file appears under DAGSTER_HOME). The process fixture is deliberately small and local
to this module; a shared one can replace it later.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml
from dagster_graphql import DagsterGraphQLClient

from sizeagg_pipeline.core import schema
from sizeagg_pipeline.core.periods import windows_for_date
from sizeagg_pipeline_tests.support.dagster_processes import DagsterProcesses, running_dagster
from sizeagg_pipeline_tests.support.data import add_instances, fill_days
from sizeagg_pipeline_tests.support.paths import ROOT
from sizeagg_pipeline_tests.support.postgres import SUPERUSER, PostgresServer

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::DeprecationWarning:gql.client"),  # dagster-graphql's own call
]

DAY = date(2026, 1, 7)
LOCATION = "sizeagg"
FINISHED = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}


@pytest.fixture
def deployment(postgres_server: PostgresServer, tmp_path: Path) -> Iterator[dict[str, object]]:
    """Webserver + daemon on the shipped PostgreSQL instance config; torn down as groups."""
    storage_db = postgres_server.create_database("dagster")
    app_db = postgres_server.create_database("app")
    home = tmp_path / "dagster_home"
    home.mkdir()
    config = yaml.safe_load((ROOT / "deploy" / "dagster-postgres.yaml").read_text())
    # only for the test's pace: the daemon looks at the queue every second, not every 5
    config["run_coordinator"] = {
        "module": "dagster._core.run_coordinator",
        "class": "QueuedRunCoordinator",
        "config": {"dequeue_interval_seconds": 1},
    }
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    env = {
        "DAGSTER_PG_HOST": "127.0.0.1",
        "DAGSTER_PG_PORT": str(postgres_server.port),
        "DAGSTER_PG_USER": SUPERUSER,
        "DAGSTER_PG_PASSWORD": "unused-with-trust-auth",
        "DAGSTER_PG_DB": storage_db,
        "SIZEAGG_DATABASE_URL": postgres_server.url(app_db),
        # this test launches its own runs: no daily tick for yesterday beside them
        "SIZEAGG_DAILY_TICK": "off",
    }
    try:
        # the production shape: dagster-webserver and dagster-daemon as two services
        with running_dagster(home, env, services=True) as dagster:
            yield {"dagster": dagster, "home": home, "storage_db": storage_db, "app_db": app_db}
    finally:
        postgres_server.drop_database(app_db)
        postgres_server.drop_database(storage_db)


def _wait_runs(
    client: DagsterGraphQLClient, run_ids: list[str], dagster: DagsterProcesses, timeout: float = 300
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        statuses = [client.get_run_status(r) for r in run_ids]
        if all(s in FINISHED for s in statuses):
            assert statuses == [dg.DagsterRunStatus.SUCCESS] * len(run_ids), dagster.log_tail()
            return
        time.sleep(1)
    pytest.fail(f"runs not finished within {timeout} s: {statuses}\n{dagster.log_tail()}")


def test_webserver_and_daemon_on_postgresql_storage(
    deployment: dict[str, object], postgres_server: PostgresServer
) -> None:
    app = schema.make_engine(postgres_server.url(str(deployment["app_db"])))
    storage = sa.create_engine(postgres_server.url(str(deployment["storage_db"])))
    try:
        schema.create_missing(app)
        with app.begin() as conn:
            ids = add_instances(conn, 3)
            fill_days(conn, ids, date(2025, 10, 1), DAY, databases=2)

        dagster = deployment["dagster"]
        assert isinstance(dagster, DagsterProcesses)
        client = DagsterGraphQLClient("127.0.0.1", port_number=dagster.port)
        execution = f"e2e:{uuid.uuid4().hex[:8]}"
        tags = {
            "sizeagg/execution": execution,
            "sizeagg/date": DAY.isoformat(),
            "sizeagg/sync_type": "manual_task",
        }
        period_runs = [
            client.submit_job_execution(
                f"{period}_aggregation_job",
                repository_location_name=LOCATION,
                tags={**tags, "dagster/partition": window.key},
            )
            for period, window in windows_for_date(DAY).items()
        ]
        _wait_runs(client, period_runs, dagster)
        session_run = client.submit_job_execution(
            "aggregation_session_job", repository_location_name=LOCATION, tags=tags
        )
        _wait_runs(client, [session_run], dagster)

        with app.connect() as conn:
            session = conn.execute(sa.select(schema.sync_sessions)).mappings().one()
            daily = conn.execute(
                sa.select(sa.func.count())
                .select_from(schema.database_size_aggregations)
                .where(
                    schema.database_size_aggregations.c.period_type == "daily",
                    schema.database_size_aggregations.c.period_start == DAY,
                )
            ).scalar_one()
        assert (session["status"], session["total_instances"], session["successful_instances"]) == (
            "completed",
            3,
            3,
        )
        assert daily == 6

        # Dagster's own records are in PostgreSQL, and nowhere else (the daemon's own runs,
        # such as a sensor's, may be there too: only the test's five are counted)
        ours = [*period_runs, session_run]
        with storage.connect() as conn:
            runs: dict[str, str] = dict(
                conn.execute(sa.text("SELECT run_id, status FROM runs")).all()  # dagster-postgres' table
            )
            events: dict[str, int] = dict(
                conn.execute(
                    sa.text(
                        "SELECT dagster_event_type, count(*) FROM event_logs "
                        "WHERE run_id IN :ids GROUP BY dagster_event_type"
                    ).bindparams(sa.bindparam("ids", expanding=True)),
                    {"ids": ours},
                ).all()
            )
        assert set(runs) >= set(ours)
        assert {runs[run_id] for run_id in ours} == {"SUCCESS"}
        # every run was queued, and only the daemon launches queued runs
        queued = [events.get(f"PIPELINE_{e}") for e in ("ENQUEUED", "START", "SUCCESS")]
        assert queued == [5, 5, 5], events
        home = Path(str(deployment["home"]))
        assert not list(home.rglob("*.db")), "a SQLite storage file appeared"
    finally:
        app.dispose()
        storage.dispose()
