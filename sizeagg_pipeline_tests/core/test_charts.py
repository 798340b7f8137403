"""core/charts.py: growth leaders, ranked by MB grown over the last 12 periods, drawn as a PNG."""

from __future__ import annotations

import base64
from datetime import date, timedelta

import sqlalchemy as sa

from sizeagg_pipeline.core import charts, schema
from sizeagg_pipeline.core.levels import DATABASE, INSTANCE
from sizeagg_pipeline.core.periods import Period
from sizeagg_pipeline_tests.support.data import add_instances

LAST_WEEK = date(2026, 3, 30)  # a Monday


def weekly_row(instance_id: int, database: str, week: int, size: int) -> dict[str, object]:
    start = LAST_WEEK - timedelta(weeks=week)
    return {
        "instance_id": instance_id,
        "database_name": database,
        "period_type": "weekly",
        "period_start": start,
        "period_end": start + timedelta(days=6),
        "avg_size_mb": size,
        "max_size_mb": size,
        "min_size_mb": size,
        "data_count": 7,
    }


def test_top_ten_by_growth_over_twelve_weeks(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        (i1, i2) = add_instances(conn, 2)
        rows = []
        for n in range(12):  # db00..db11 grow n × 100 MB over weeks 11 → 0 ago
            rows += [
                weekly_row(i1, f"db{n:02d}", week, 1000 + n * 100 * (11 - week) // 11) for week in range(12)
            ]
        rows += [weekly_row(i2, "shrinks", w, 5000 - 10 * (11 - w)) for w in range(12)]
        rows += [weekly_row(i2, "once", 0, 99_999)]  # one period: no growth to measure
        rows += [weekly_row(i2, "old", w, 10 + 10_000 * (w == 0)) for w in (0, 12)]  # 12 weeks ago is outside
        conn.execute(schema.database_size_aggregations.insert(), rows)
        report = charts.growth_report(conn, DATABASE, Period.WEEKLY, LAST_WEEK)

    assert (report.first.start, report.last.start) == (LAST_WEEK - timedelta(weeks=11), LAST_WEEK)
    assert list(report.leaders["label"]) == [f"i1 / db{n:02d}" for n in range(11, 1, -1)]
    assert list(report.leaders["growth_mb"]) == [n * 100 for n in range(11, 1, -1)]
    assert report.leaders.iloc[0]["growth_percent"] == 110.0
    assert report.series == 13  # the 12 growing ones and "shrinks"; "once" and "old" have one period
    assert list(report.history.columns) == list(report.leaders["label"])

    png = charts.render_png(report)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    markdown = charts.chart_markdown(report)
    assert base64.b64decode(markdown.split("base64,", 1)[1].rstrip(")")).startswith(b"\x89PNG")
    table = charts.table_markdown(report)
    assert "| i1 / db11 " in table and "MB per week" in table and "shrinks" not in table


def test_nothing_grew(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        report = charts.growth_report(conn, INSTANCE, Period.MONTHLY, date(2026, 3, 1))
    assert report.leaders.empty
    assert charts.table_markdown(report).startswith("_no instances grew")
    assert charts.render_png(report).startswith(b"\x89PNG")
