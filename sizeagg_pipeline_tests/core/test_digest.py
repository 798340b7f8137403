"""core/digest.py: the morning digest on crafted data, line by line.

The growth rule is the origin's: ≥ 30 % and ≥ 20 GB against the latest earlier day at
most 3 days back. The data sit on its edges (29 % / 31 %, 19 GB / 21 GB, exactly 30 %,
a baseline 2 and 4 days old); the daily aggregates are written by the real
aggregation from raw rows.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from sizeagg_pipeline.core import aggregation, digest, schema, sessions
from sizeagg_pipeline.core.alerts import Kind, Severity
from sizeagg_pipeline.core.levels import DATABASE
from sizeagg_pipeline.core.periods import Period, windows_between
from sizeagg_pipeline.core.sessions import Outcome, SyncType
from sizeagg_pipeline.core.settings import alerting
from sizeagg_pipeline_tests.support.data import add_db_rows, add_instances

TZ = ZoneInfo("Asia/Shanghai")
TODAY = date(2026, 3, 18)
DAY = TODAY - timedelta(days=1)  # the digest is about yesterday
GB = 1024

# database: {days before DAY: size in MB}
SIZES = {
    "p31_gb21": {1: 69_000, 0: 69_000 + 21 * GB},  # 31.2 %, 21 GB: alert
    "p29_gb21": {1: 74_000, 0: 74_000 + 21 * GB},  # 29.1 %: no
    "p31_gb19": {1: 62_000, 0: 62_000 + 19 * GB},  # 31.4 %, 19 GB: no
    "p30_exact": {1: 70 * GB, 0: 70 * GB + 21 * GB},  # exactly 30 %: alert
    "p72_gb21": {1: 30_000, 0: 30_000 + 21 * GB},  # 71.7 %: critical (twice the rule)
    "two_days": {2: 60_000, 0: 60_000 + 25 * GB},  # baseline 2 days old: alert
    "four_days": {4: 60_000, 0: 60_000 + 25 * GB},  # baseline 4 days old: too old
    "shrunk": {1: 90_000, 0: 60_000},
}


@pytest.fixture
def data(engine: sa.Engine) -> sa.Engine:
    with engine.begin() as conn:
        add_instances(conn, 2)
        rows = [
            {
                "instance_id": 1,
                "database_name": name,
                "size_mb": size,
                "collected_date": DAY - timedelta(days=back),
            }
            for name, days in SIZES.items()
            for back, size in days.items()
        ]
        add_db_rows(conn, rows)
    days = windows_between(Period.DAILY, (DAY - timedelta(days=4)).isoformat(), DAY.isoformat())
    aggregation.aggregate(engine, DATABASE, days)
    _forecast_rows(engine)
    _sessions(engine)
    return engine


def _forecast_rows(engine: sa.Engine) -> None:
    """What the forecast wrote as of DAY: two limits at risk, one threshold crossing, one normal."""
    common = {
        "as_of": DAY, "window_days": 90, "sample_days": 90, "first_day": DAY - timedelta(days=89),
        "last_day": DAY, "slope_mb_per_day": 100.0, "projected_90d_mb": 0, "projected_180d_mb": 0,
        "r_squared": 1.0, "residual_scale_mb": 0.5, "outlier_days": 0, "method": "m",
    }  # fmt: skip
    forecasts = [
        # instance, database, last/fitted, projected 30 d, threshold, days until threshold
        (2, "orders", 97_000, 130_000, 51_200, 0),
        (2, None, 400_000, 430_000, 512_000, 1120),
        (1, "logs", 45_000, 48_000, 51_200, 62),
        (1, "p31_gb21", 47_000, 50_000, 51_200, 42),
        (2, "calm", 10_000, 10_000, 51_200, None),
    ]
    limits = [
        # limit, used %, days until limit, low, high, severity
        (100_000, 97.0, 30, 25, 36, "critical"),
        (450_000, 88.89, 500, 300, None, "warning"),
        (None, None, None, None, None, "normal"),
        (None, None, None, None, None, "warning"),  # the threshold rule: 51,200 MB in 12 days
        (None, None, None, None, None, "normal"),
    ]
    with engine.begin() as conn:
        for (iid, db, size, in30, threshold, until), (limit, used, days, low, high, severity) in zip(
            forecasts, limits, strict=True
        ):
            until = 12 if severity == "warning" and limit is None else until
            conn.execute(
                schema.capacity_forecasts.insert().values(
                    instance_id=iid, database_name=db, last_size_mb=size, fitted_size_mb=size,
                    projected_30d_mb=in30, threshold_mb=threshold, days_until_threshold=until, **common,
                )
            )  # fmt: skip
            conn.execute(
                schema.capacity_limit_forecasts.insert().values(
                    instance_id=iid, database_name=db, as_of=DAY, limit_mb=limit, used_percent=used,
                    days_until_limit=days, days_until_limit_low=low, days_until_limit_high=high,
                    interval_percent=90, severity=severity,
                )
            )  # fmt: skip


WEEKLY_FAILED = "aggregation failed: weekly partition 2026-03-16 failed"


def _sessions(engine: sa.Engine) -> None:
    """Yesterday: one completed, one failed; today's early session does not count."""
    ended = [
        (datetime(2026, 3, 17, 4, 3, tzinfo=TZ), None),
        (datetime(2026, 3, 17, 23, 50, tzinfo=TZ), Outcome.failed(WEEKLY_FAILED)),
        (datetime(2026, 3, 18, 0, 10, tzinfo=TZ), Outcome.failed("today")),
    ]  # fmt: skip
    for number, (at, outcome) in enumerate(ended):
        with engine.begin() as conn:
            details = {"execution": f"scheduled:run{number}"}
            session_id = sessions.open_session(conn, sync_type=SyncType.SCHEDULED, details=details)
            if outcome is None:
                sessions.complete_session(conn, session_id, {}, details)
            else:
                sessions.finalise_session(conn, session_id, outcome)
            conn.execute(
                sa.update(schema.sync_sessions)
                .where(schema.sync_sessions.c.session_id == session_id)
                .values(completed_at=at.astimezone(UTC))
            )


EXPECTED_LINES = [
    "CRITICAL capacity i2/orders: 97.0 % of 100,000 MB used; limit in 30 days (90 %: 25–36 days)",
    "CRITICAL growth   i1/p72_gb21: +71.7 % (+21,504 MB) in 1 day, "
    "30,000 MB on 2026-03-16 → 51,504 MB on 2026-03-17",
    "WARNING  growth   i1/two_days: +42.7 % (+25,600 MB) in 2 days, "
    "60,000 MB on 2026-03-15 → 85,600 MB on 2026-03-17",
    "WARNING  growth   i1/p30_exact: +30.0 % (+21,504 MB) in 1 day, "
    "71,680 MB on 2026-03-16 → 93,184 MB on 2026-03-17",
    "WARNING  growth   i1/p31_gb21: +31.2 % (+21,504 MB) in 1 day, "
    "69,000 MB on 2026-03-16 → 90,504 MB on 2026-03-17",
    "WARNING  capacity i1/p31_gb21: threshold 51,200 MB in 12 days (no capacity limit set)",
    "WARNING  capacity i2 (instance total): 88.9 % of 450,000 MB used; "
    "limit in 500 days (90 %: 300 days or later)",
]


def test_the_digest_line_by_line(data: sa.Engine) -> None:
    with data.connect() as conn:
        alert = digest.compose(conn, alerting(), TODAY, TZ, "http://ui/assets/capacity_forecast")
    assert (alert.kind, alert.subject, alert.day, alert.severity) == (
        Kind.DIGEST,
        "capacity",
        TODAY,
        Severity.CRITICAL,
    )
    assert alert.title == "capacity digest for 2026-03-17: 2 critical, 5 warning"
    assert alert.text.splitlines() == [
        "Capacity digest for 2026-03-17",
        "",
        *EXPECTED_LINES,
        "",
        "Sessions that ended 2026-03-17: 1 completed, 1 failed",
        "- failed scheduled:run1: aggregation failed: weekly partition 2026-03-16 failed",
        "",
        "Rules: growth ≥ 30 % and ≥ 20 GB against a baseline at most 3 days old; "
        "the forecast as of 2026-03-17.",
    ]


def test_at_most_n_lines_and_how_many_more(data: sa.Engine) -> None:
    settings = dataclasses.replace(alerting(), digest_max_lines=3)
    with data.connect() as conn:
        alert = digest.compose(conn, settings, TODAY, TZ, None)
    assert alert.text.splitlines()[2:6] == [*EXPECTED_LINES[:3], "… and 4 more"]


def test_thresholds_are_configurable(data: sa.Engine) -> None:
    settings = dataclasses.replace(alerting(), growth_percent=29, growth_gb=19, growth_days=4)
    with data.connect() as conn:
        lines = [line.text.split(":")[0] for line in digest.growth_lines(conn, DAY, settings, {1: "i1"})]
    assert sorted(lines) == sorted(
        f"growth   i1/{name}"
        for name in ("p31_gb21", "p29_gb21", "p31_gb19", "p30_exact", "p72_gb21", "two_days", "four_days")
    )


def test_a_quiet_day(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        alert = digest.compose(conn, alerting(), TODAY, TZ, None)
    assert alert.severity == Severity.NORMAL and alert.title == "capacity digest for 2026-03-17: all normal"
    assert alert.text.splitlines()[2:5] == [
        "No growth alert, and nothing near its capacity limit.",
        "",
        "Sessions that ended 2026-03-17: none (did the daily execution run?)",
    ]
