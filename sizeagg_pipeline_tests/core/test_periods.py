"""core/periods.py: period windows and previous windows (docs/contract.md, "Periods and windows")."""

from __future__ import annotations

import itertools
from datetime import date

import pytest

from sizeagg_pipeline.core.periods import (
    BadPartitionKey,
    Period,
    window_containing,
    window_for_key,
    windows_between,
    windows_for_date,
)


def test_daily_window_and_previous() -> None:
    w = window_containing(Period.DAILY, date(2026, 3, 1))
    assert (w.start, w.end, w.key) == (date(2026, 3, 1), date(2026, 3, 1), "2026-03-01")
    assert w.previous().start == date(2026, 2, 28)


def test_week_spanning_a_year_boundary() -> None:
    for d in (date(2026, 12, 28), date(2026, 12, 31), date(2027, 1, 3)):
        w = window_containing(Period.WEEKLY, d)
        assert (w.start, w.end) == (date(2026, 12, 28), date(2027, 1, 3))
    assert window_containing(Period.WEEKLY, date(2027, 1, 4)).start == date(2027, 1, 4)
    prev = window_containing(Period.WEEKLY, date(2027, 1, 1)).previous()
    assert (prev.start, prev.end) == (date(2026, 12, 21), date(2026, 12, 27))


def test_leap_day() -> None:
    assert window_containing(Period.MONTHLY, date(2024, 2, 29)).end == date(2024, 2, 29)
    assert window_containing(Period.MONTHLY, date(2025, 2, 10)).end == date(2025, 2, 28)
    assert window_containing(Period.DAILY, date(2024, 3, 1)).previous().start == date(2024, 2, 29)
    week = window_containing(Period.WEEKLY, date(2024, 2, 29))
    assert (week.start, week.end) == (date(2024, 2, 26), date(2024, 3, 3))
    march = window_for_key(Period.MONTHLY, "2024-03-01").previous()
    assert (march.start, march.end) == (date(2024, 2, 1), date(2024, 2, 29))


@pytest.mark.parametrize(
    ("day", "start", "end", "prev_start", "prev_end"),
    [
        (date(2026, 2, 14), date(2026, 1, 1), date(2026, 3, 31), date(2025, 10, 1), date(2025, 12, 31)),
        (date(2026, 4, 1), date(2026, 4, 1), date(2026, 6, 30), date(2026, 1, 1), date(2026, 3, 31)),
        (date(2026, 9, 30), date(2026, 7, 1), date(2026, 9, 30), date(2026, 4, 1), date(2026, 6, 30)),
        (date(2026, 12, 31), date(2026, 10, 1), date(2026, 12, 31), date(2026, 7, 1), date(2026, 9, 30)),
    ],
)
def test_every_quarter_is_three_full_months(
    day: date, start: date, end: date, prev_start: date, prev_end: date
) -> None:
    w = window_containing(Period.QUARTERLY, day)
    assert (w.start, w.end) == (start, end)
    p = w.previous()
    assert (p.start, p.end) == (prev_start, prev_end)  # the origin cut Q2–Q4 at two months


def test_windows_for_a_tick_date() -> None:
    windows = windows_for_date(date(2026, 11, 29))
    assert {p.value: w.key for p, w in windows.items()} == {
        "daily": "2026-11-29",
        "weekly": "2026-11-23",
        "monthly": "2026-11-01",
        "quarterly": "2026-10-01",
    }


def test_ranges_are_contiguous() -> None:
    weeks = windows_between(Period.WEEKLY, "2026-12-21", "2027-01-11")
    assert [w.key for w in weeks] == ["2026-12-21", "2026-12-28", "2027-01-04", "2027-01-11"]
    assert all(a.end.toordinal() + 1 == b.start.toordinal() for a, b in itertools.pairwise(weeks))
    assert len(windows_between(Period.DAILY, "2024-01-01", "2024-12-31")) == 366


@pytest.mark.parametrize(
    ("period", "key", "message"),
    [
        (Period.DAILY, "2026-02-30", "not a valid YYYY-MM-DD date"),
        (Period.DAILY, "yesterday", "not a valid YYYY-MM-DD date"),
        (Period.WEEKLY, "2026-11-25", "starts on 2026-11-23"),
        (Period.MONTHLY, "2026-11-02", "starts on 2026-11-01"),
        (Period.QUARTERLY, "2026-11-01", "starts on 2026-10-01"),
    ],
)
def test_bad_keys_are_named(period: Period, key: str, message: str) -> None:
    with pytest.raises(BadPartitionKey, match=message):
        window_for_key(period, key)


def test_reversed_range_is_refused() -> None:
    with pytest.raises(BadPartitionKey, match="reversed"):
        windows_between(Period.DAILY, "2026-01-05", "2026-01-01")
