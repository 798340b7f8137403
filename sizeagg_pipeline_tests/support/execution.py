"""One scheduled execution of DAY, driven in process: its tags, the gate, a database that refuses writes.

The data set is `three_active_one_inactive` (instances 1-3 active, 4 inactive); the
test modules of the gate, the session asset, the failure sensors, the janitor and
the closer all end this one execution in their own way.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import sqlalchemy as sa

from sizeagg_pipeline.defs.sessions import vocabulary
from sizeagg_pipeline.defs.sessions.gate import gate_tick
from sizeagg_pipeline.defs.sessions.vocabulary import Trigger
from sizeagg_pipeline_tests.support.data import EXECUTION_DAY

DAY = EXECUTION_DAY  # a Wednesday
EXECUTION = f"scheduled:{DAY}"
ACTIVE = 3
STALE_AFTER = timedelta(hours=2)


@dataclass(frozen=True)
class GateTick:
    """One evaluation of the gate, as the tests read it."""

    run_requests: list[dg.RunRequest]
    cursor: str


def gated_tags(execution_id: str = EXECUTION, day: date = DAY) -> dict[str, str]:
    return vocabulary.execution_tags(execution_id, trigger=Trigger.TICK)


def gate(instance: dg.DagsterInstance, engine: sa.Engine, cursor: str | None = None) -> GateTick:
    result = gate_tick(instance, engine, cursor, datetime.now(UTC), STALE_AFTER)
    assert result.cursor is not None  # the gate always hands back its cursor
    return GateTick(list(result.run_requests or []), result.cursor)


def reject_updates(
    engine: sa.Engine, table: str, message: str, *, when: str | None = None, event: str = "UPDATE"
) -> None:
    """Make the database refuse writes to `table` matching `when` (a real database error, not a mock)."""
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            condition = f"WHEN {when}" if when else ""
            conn.exec_driver_sql(
                f"CREATE TRIGGER sizeagg_test_reject BEFORE {event} ON {table} FOR EACH ROW {condition} "
                f"BEGIN SELECT RAISE(ABORT, '{message}'); END"
            )
        else:
            conn.exec_driver_sql(
                "CREATE FUNCTION sizeagg_test_reject() RETURNS trigger LANGUAGE plpgsql AS $$ "
                f"BEGIN IF {when or 'TRUE'} THEN RAISE EXCEPTION '{message}'; END IF; RETURN NEW; END $$"
            )
            conn.exec_driver_sql(
                f"CREATE TRIGGER sizeagg_test_reject BEFORE {event} ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION sizeagg_test_reject()"
            )


def allow_updates(engine: sa.Engine, table: str) -> None:
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("DROP TRIGGER sizeagg_test_reject")
        else:
            conn.exec_driver_sql(f"DROP TRIGGER sizeagg_test_reject ON {table}")
            conn.exec_driver_sql("DROP FUNCTION sizeagg_test_reject()")
