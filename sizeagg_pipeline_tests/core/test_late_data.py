"""core/late_data.py: which raw days changed, and which partitions that invalidates (issue 4.3).

The sensor that acts on it is tested in defs/late_data/test_sensor.py.
"""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from sizeagg_pipeline.core import late_data, schema
from sizeagg_pipeline.core.late_data import Fingerprints
from sizeagg_pipeline.core.periods import Period, window_for_key
from sizeagg_pipeline_tests.support.data import add_db_rows, two_instances_observed

DB = schema.database_size_stats
INST = schema.instance_size_stats
SINCE = date(2026, 2, 1)
NOW = datetime(2026, 3, 20, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai"))


@pytest.fixture
def data(engine: sa.Engine) -> sa.Engine:
    """Two instances, two databases each, every day of 2026-02-16..2026-03-18."""
    return two_instances_observed(engine)


def changes(
    engine: sa.Engine, before: Fingerprints
) -> tuple[dict[str, list[date]], dict[str, dict[str, str]]]:
    with engine.connect() as conn:
        after = late_data.fingerprints(conn, SINCE)
    return late_data.changed_days(before, after, SINCE), after


def test_fingerprints_notice_new_updated_deleted_rows_per_raw_table(data: sa.Engine) -> None:
    with data.connect() as conn:
        base = late_data.fingerprints(conn, SINCE)
    for level in ("database", "instance"):
        assert (
            len(base[level]) == 31 and min(base[level]) == "2026-02-16" and max(base[level]) == "2026-03-18"
        )
    assert changes(data, base)[0] == {}  # nothing changed, nothing reported

    with data.connect() as conn:
        day_of_7 = conn.execute(sa.select(DB.c.collected_date).where(DB.c.id == 7)).scalar_one()
    steps = [
        (
            "updated size",
            sa.update(DB).where(DB.c.id == 7).values(size_mb=DB.c.size_mb + 1),
            "database",
            day_of_7,
        ),
        (
            "swapped sizes",
            sa.update(DB)
            .where(DB.c.collected_date == date(2026, 3, 2), DB.c.instance_id == 1)
            .values(size_mb=sa.case((DB.c.database_name == "db0", 111), else_=110)),
            "database",
            date(2026, 3, 2),
        ),
        (
            "deleted row",
            sa.delete(DB).where(DB.c.collected_date == date(2026, 3, 5), DB.c.instance_id == 2),
            "database",
            date(2026, 3, 5),
        ),
        (
            "soft-deleted instance row",
            sa.update(INST).where(INST.c.collected_date == date(2026, 3, 6)).values(is_deleted=True),
            "instance",
            date(2026, 3, 6),
        ),
        (
            "re-collected",
            sa.update(DB).where(DB.c.collected_date == date(2026, 3, 7)).values(collected_at=NOW),
            "database",
            date(2026, 3, 7),
        ),
    ]
    current = base
    for what, statement, level, day in steps:
        with data.begin() as conn:
            conn.execute(statement)
        changed, current = changes(data, current)
        assert changed == {level: [day]}, what
    with data.begin() as conn:  # a late day nobody had seen
        add_db_rows(
            conn,
            [{"instance_id": 1, "database_name": "db0", "size_mb": 5, "collected_date": date(2026, 3, 19)}],
        )
    assert changes(data, current)[0] == {"database": [date(2026, 3, 19)]}


def test_affected_partitions_are_the_windows_and_their_successors_of_one_level() -> None:
    aggregated = {
        Period.DAILY: {f"2026-02-{d:02d}" for d in range(16, 29)}
        | {f"2026-03-{d:02d}" for d in range(1, 19)},
        Period.WEEKLY: {"2026-02-16", "2026-02-23", "2026-03-02", "2026-03-09", "2026-03-16"},
        Period.MONTHLY: {"2026-02-01", "2026-03-01"},
        Period.QUARTERLY: {"2026-01-01"},
    }
    # Q2 exists at the instance level only (its database level failed)
    materialized = {
        "database": aggregated,
        "instance": {**aggregated, Period.QUARTERLY: {"2026-01-01", "2026-04-01"}},
    }

    def keys(plan: late_data.LateDataPlan) -> dict[Period, list[tuple[str, list[str]]]]:
        return {p: [(w.key, sorted(levels)) for w, levels in ws.items()] for p, ws in plan.items()}

    db = ["database"]
    assert keys(late_data.affected_windows({"database": [date(2026, 3, 4)]}, materialized)) == {
        Period.DAILY: [("2026-03-04", db), ("2026-03-05", db)],
        Period.WEEKLY: [("2026-03-02", db), ("2026-03-09", db)],
        Period.MONTHLY: [("2026-03-01", db)],  # April was never aggregated: not computed now
        Period.QUARTERLY: [("2026-01-01", db)],  # nor Q2 at the database level
    }
    both = ["database", "instance"]
    plan = late_data.affected_windows(
        {
            "database": [date(2026, 2, 28), date(2026, 3, 25)],
            "instance": [date(2026, 3, 31), date(2026, 3, 1)],
        },
        materialized,
    )
    assert keys(plan) == {
        # 03-25 and 03-31 were not aggregated yet: the tick's business
        Period.DAILY: [("2026-02-28", db), ("2026-03-01", both), ("2026-03-02", ["instance"])],
        Period.WEEKLY: [("2026-02-23", both), ("2026-03-02", both)],
        Period.MONTHLY: [("2026-02-01", db), ("2026-03-01", both)],
        Period.QUARTERLY: [("2026-01-01", both), ("2026-04-01", ["instance"])],
    }
    groups = late_data.run_groups(plan[Period.DAILY])
    assert [(a.key, b.key, sorted(levels)) for a, b, levels in groups] == [
        ("2026-02-28", "2026-02-28", db),
        ("2026-03-01", "2026-03-01", both),
        ("2026-03-02", "2026-03-02", ["instance"]),
    ]
    same = {
        window_for_key(Period.DAILY, k): frozenset(db) for k in ("2026-03-01", "2026-03-02", "2026-03-04")
    }
    assert [(a.key, b.key) for a, b, _ in late_data.run_groups(same)] == [
        ("2026-03-01", "2026-03-02"),
        ("2026-03-04", "2026-03-04"),
    ]
