"""core/aggregation.py: the contract's arithmetic on hand-computed fixtures, against a real database.

The rules are docs/contract.md, "The numbers". The window is the ISO week
2026-01-05 .. 2026-01-11; the previous window is 2025-12-29 .. 2026-01-04. Every
expected value below was computed by hand from the exact rationals (see the comments).
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
import sqlalchemy as sa

from sizeagg_pipeline.core import aggregation, levels, schema
from sizeagg_pipeline.core.periods import Period, window_for_key
from sizeagg_pipeline_tests.support.data import add_db_rows, add_instance_rows, add_instances

CUR = [date(2026, 1, 5), date(2026, 1, 6), date(2026, 1, 7)]
PREV = [date(2025, 12, 29), date(2025, 12, 30), date(2025, 12, 31)]
WEEK = window_for_key(Period.WEEKLY, "2026-01-05")


def _db(
    name: str,
    days: list[date],
    sizes: list[int | None],
    data: list[int | None] | None = None,
    log: list[int | None] | None = None,
) -> list[dict[str, object]]:
    data = data or [None] * len(sizes)
    log = log or [None] * len(sizes)
    return [
        {
            "instance_id": 1,
            "database_name": name,
            "size_mb": s,
            "data_size_mb": d,
            "log_size_mb": lg,
            "collected_date": day,
        }
        for day, s, d, lg in zip(days, sizes, data, log, strict=True)
    ]


def _pct(value: object) -> Decimal | None:
    return None if value is None else Decimal(str(value)).quantize(Decimal("0.01"))


@pytest.fixture
def database_rows(engine: sa.Engine) -> dict[str, dict[str, object]]:
    with engine.begin() as conn:
        add_instances(conn, 1)
        rows = []
        # a: mean 10.5 → avg 10 (floor); change 10.5 − 12 = −1.5 → −1 (trunc, not floor);
        #    −1.5 / 12 = −12.5 %
        rows += _db("a", CUR[:2], [10, 11]) + _db("a", PREV[:1], [12])
        # b: 1/32 = 3.125 % → 3.13 (half away from zero); b2: −3.125 % → −3.13
        rows += _db("b", CUR[:1], [33]) + _db("b", PREV[:1], [32])
        rows += _db("b2", CUR[:1], [31]) + _db("b2", PREV[:1], [32])
        # c: previous mean 0 → percent 0, change still 5
        rows += _db("c", CUR[:1], [5]) + _db("c", PREV[:2], [0, 0])
        # d: no previous window; data present → data change 0; log absent → NULL
        rows += _db("d", CUR[:1], [7], data=[6])
        # e: NULL data/log: data over non-NULL only; previous has no data → data change NULL
        rows += _db("e", CUR[:2], [9, 9], data=[None, 8]) + _db("e", PREV[:1], [9], log=[3])
        # f: 10 → 1000 MB is +9900 %; g: 1 → 2e9 MB is clamped to 99,999,999.99
        rows += _db("f", CUR[:1], [1000]) + _db("f", PREV[:1], [10])
        rows += _db("g", CUR[:1], [2_000_000_000]) + _db("g", PREV[:1], [1])
        # h: mean 5/3 → 1; change trunc(2/3) = 0; 2/3 / 1 = 66.666… % → 66.67;
        #    data mean 3.5 vs 3: change 0, 16.666… % → 16.67
        rows += _db("h", CUR, [1, 2, 2], data=[3, 4, None]) + _db("h", PREV[:1], [1], data=[3])
        add_db_rows(conn, rows)
    aggregation.aggregate(engine, levels.DATABASE, [WEEK])
    with engine.connect() as conn:
        result = conn.execute(
            sa.select(schema.database_size_aggregations).where(
                schema.database_size_aggregations.c.period_type == "weekly"
            )
        ).mappings()
        return {r["database_name"]: dict(r) for r in result}


def test_floor_and_truncation(database_rows: dict[str, dict[str, object]]) -> None:
    a = database_rows["a"]
    assert (a["avg_size_mb"], a["max_size_mb"], a["min_size_mb"], a["data_count"]) == (10, 11, 10, 2)
    assert a["size_change_mb"] == -1
    assert _pct(a["size_change_percent"]) == Decimal("-12.50")
    assert _pct(a["growth_rate"]) == Decimal("-12.50")
    assert (a["period_start"], a["period_end"]) == (date(2026, 1, 5), date(2026, 1, 11))


def test_round_half_away_from_zero(database_rows: dict[str, dict[str, object]]) -> None:
    assert _pct(database_rows["b"]["size_change_percent"]) == Decimal("3.13")
    assert database_rows["b"]["size_change_mb"] == 1
    assert _pct(database_rows["b2"]["size_change_percent"]) == Decimal("-3.13")
    assert database_rows["b2"]["size_change_mb"] == -1


def test_previous_mean_not_positive(database_rows: dict[str, dict[str, object]]) -> None:
    c = database_rows["c"]
    assert c["size_change_mb"] == 5
    assert _pct(c["size_change_percent"]) == Decimal("0.00")
    assert _pct(c["growth_rate"]) == Decimal("0.00")


def test_no_previous_window(database_rows: dict[str, dict[str, object]]) -> None:
    d = database_rows["d"]
    assert (d["size_change_mb"], _pct(d["size_change_percent"]), _pct(d["growth_rate"])) == (
        0,
        Decimal("0.00"),
        Decimal("0.00"),
    )
    assert (d["data_size_change_mb"], _pct(d["data_size_change_percent"])) == (0, Decimal("0.00"))
    assert (d["log_size_change_mb"], d["log_size_change_percent"]) == (None, None)
    assert (d["avg_log_size_mb"], d["max_log_size_mb"], d["min_log_size_mb"]) == (None, None, None)


def test_null_data_and_log_sizes(database_rows: dict[str, dict[str, object]]) -> None:
    e = database_rows["e"]
    assert (e["avg_data_size_mb"], e["max_data_size_mb"], e["min_data_size_mb"]) == (8, 8, 8)
    assert (e["data_size_change_mb"], e["data_size_change_percent"]) == (None, None)
    assert (e["avg_log_size_mb"], e["log_size_change_mb"], e["log_size_change_percent"]) == (None, None, None)
    assert e["size_change_mb"] == 0


def test_growth_beyond_1000_percent_and_clamp(database_rows: dict[str, dict[str, object]]) -> None:
    assert _pct(database_rows["f"]["size_change_percent"]) == Decimal("9900.00")
    assert database_rows["f"]["size_change_mb"] == 990
    g = database_rows["g"]
    assert _pct(g["size_change_percent"]) == Decimal("99999999.99")
    assert g["size_change_mb"] == 1_999_999_999


def test_exact_means_of_three_rows(database_rows: dict[str, dict[str, object]]) -> None:
    h = database_rows["h"]
    assert (h["avg_size_mb"], h["data_count"], h["size_change_mb"]) == (1, 3, 0)
    assert _pct(h["size_change_percent"]) == Decimal("66.67")
    assert (h["avg_data_size_mb"], h["min_data_size_mb"], h["max_data_size_mb"]) == (3, 3, 4)
    assert (h["data_size_change_mb"], _pct(h["data_size_change_percent"])) == (0, Decimal("16.67"))


def _inst(
    instance_id: int, days: list[date], totals: list[int], counts: list[int]
) -> list[dict[str, object]]:
    return [
        {"instance_id": instance_id, "total_size_mb": t, "database_count": c, "collected_date": d}
        for d, t, c in zip(days, totals, counts, strict=True)
    ]


@pytest.fixture
def instance_rows(engine: sa.Engine) -> dict[int, dict[str, object]]:
    with engine.begin() as conn:
        add_instances(conn, 8, inactive=(8,))
        rows = []
        # 1: totals 100, 101 → 100; 201 MB / 7 databases → 28; counts 3, 4 → 3 and 3.50;
        #    vs 96 / 4: change trunc(4.5) = 4, 4.5/96 = 4.6875 % → 4.69, stable;
        #    count change trunc(3.5 − 4) = 0, −0.5/4 = −12.5 %
        rows += _inst(1, CUR[:2], [100, 101], [3, 4]) + _inst(1, PREV[:1], [96], [4])
        # 2: 625.5 / 12500 = 5.004 % → stored 5.00 → stable
        rows += _inst(2, CUR[:2], [13125, 13126], [1, 1]) + _inst(2, PREV[:1], [12500], [1])
        # 3: +5.01 % growing; 4: −5.01 % shrinking; 5: exactly −5.00 % stable
        rows += _inst(3, CUR[:1], [10501], [1]) + _inst(3, PREV[:1], [10000], [1])
        rows += _inst(4, CUR[:1], [9499], [1]) + _inst(4, PREV[:1], [10000], [1])
        rows += _inst(5, CUR[:1], [95], [1]) + _inst(5, PREV[:1], [100], [1])
        # 6: no previous window
        rows += _inst(6, CUR[:1], [50], [2])
        # 7: no databases: avg_size_mb 0, previous total 0 → percent 0
        rows += _inst(7, CUR[:1], [0], [0]) + _inst(7, PREV[:1], [0], [0])
        # 8: inactive instance still gets its row
        rows += _inst(8, CUR[:1], [10], [1])
        add_instance_rows(conn, rows)
        # a soft-deleted row is ignored
        add_instance_rows(
            conn,
            [
                {
                    "instance_id": 1,
                    "total_size_mb": 999999,
                    "database_count": 99,
                    "collected_date": CUR[2],
                    "is_deleted": True,
                }
            ],
        )
    aggregation.aggregate(engine, levels.INSTANCE, [WEEK])
    with engine.connect() as conn:
        result = conn.execute(sa.select(schema.instance_size_aggregations)).mappings()
        return {r["instance_id"]: dict(r) for r in result}


def test_instance_means_and_counts(instance_rows: dict[int, dict[str, object]]) -> None:
    r = instance_rows[1]
    assert (r["total_size_mb"], r["avg_size_mb"], r["max_size_mb"], r["min_size_mb"]) == (100, 28, 101, 100)
    assert (r["data_count"], r["database_count"], _pct(r["avg_database_count"])) == (2, 3, Decimal("3.50"))
    assert (r["max_database_count"], r["min_database_count"]) == (4, 3)
    assert (r["total_size_change_mb"], _pct(r["total_size_change_percent"])) == (4, Decimal("4.69"))
    assert (r["database_count_change"], _pct(r["database_count_change_percent"])) == (0, Decimal("-12.50"))
    assert (_pct(r["growth_rate"]), r["trend_direction"]) == (Decimal("4.69"), "stable")


def test_trend_is_decided_on_the_stored_rate(instance_rows: dict[int, dict[str, object]]) -> None:
    expected = {
        2: ("5.00", "stable"),
        3: ("5.01", "growing"),
        4: ("-5.01", "shrinking"),
        5: ("-5.00", "stable"),
    }
    for instance_id, (rate, trend) in expected.items():
        row = instance_rows[instance_id]
        assert (_pct(row["growth_rate"]), row["trend_direction"]) == (Decimal(rate), trend)


def test_instance_without_previous_or_databases(instance_rows: dict[int, dict[str, object]]) -> None:
    six = instance_rows[6]
    assert [six[c] for c in ("total_size_change_mb", "database_count_change", "trend_direction")] == [
        0,
        0,
        "stable",
    ]
    assert _pct(six["total_size_change_percent"]) == _pct(six["growth_rate"]) == Decimal("0.00")
    seven = instance_rows[7]
    assert (seven["avg_size_mb"], seven["total_size_change_mb"]) == (0, 0)
    assert _pct(seven["total_size_change_percent"]) == Decimal("0.00")
    assert _pct(seven["database_count_change_percent"]) == Decimal("0.00")
    assert instance_rows[8]["total_size_mb"] == 10  # inactive, still aggregated
