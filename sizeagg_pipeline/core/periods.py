"""Period windows (docs/contract.md, Periods) as pure date arithmetic.

A window is an inclusive range of business dates. Every period has a partition
key (the window's first day, ``YYYY-MM-DD``) and a previous window, which is the
window of the same period type that ends the day before it starts.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum


class Period(StrEnum):
    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"
    QUARTERLY = "quarterly"


PERIODS: tuple[Period, ...] = tuple(Period)


class BadPartitionKey(ValueError):
    """A partition key or date that does not name a window of its period."""


@dataclass(frozen=True, order=True)
class Window:
    period: Period
    start: date
    end: date

    @property
    def key(self) -> str:
        return self.start.isoformat()

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def previous(self) -> Window:
        return window_containing(self.period, self.start - timedelta(days=1))

    def next(self) -> Window:
        return window_containing(self.period, self.end + timedelta(days=1))

    def __str__(self) -> str:
        return f"{self.period} {self.start}..{self.end}"


def _month_start(d: date) -> date:
    return d.replace(day=1)


def _add_months(d: date, months: int) -> date:
    """First day of the month `months` after d's month."""
    index = d.year * 12 + d.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def window_containing(period: Period, d: date) -> Window:
    """The window of `period` that contains the business date `d`."""
    period = Period(period)
    if period is Period.DAILY:
        return Window(period, d, d)
    if period is Period.WEEKLY:
        monday = d - timedelta(days=d.weekday())
        return Window(period, monday, monday + timedelta(days=6))
    if period is Period.MONTHLY:
        start = _month_start(d)
        return Window(period, start, _add_months(start, 1) - timedelta(days=1))
    start = date(d.year, (d.month - 1) // 3 * 3 + 1, 1)
    return Window(period, start, _add_months(start, 3) - timedelta(days=1))


def parse_date(text: str, what: str = "date") -> date:
    try:
        return date.fromisoformat(text)
    except (TypeError, ValueError):
        raise BadPartitionKey(f"{what} {text!r} is not a valid YYYY-MM-DD date") from None


def window_for_key(period: Period, key: str) -> Window:
    """The window a partition key names; the key must be the window's first day."""
    period = Period(period)
    window = window_containing(period, parse_date(key, f"{period} partition key"))
    if window.key != key:
        raise BadPartitionKey(
            f"{period} partition key {key!r} is not the first day of its window "
            f"(the {period} window containing it starts on {window.key})"
        )
    return window


def span_text(first: date | str, last: date | str) -> str:
    """A range of days or partition keys as people read it (UI, logs, messages): `a..b`.

    One notation for every human-facing range; `key_range` keeps Dagster's `a...b`
    where a partition range is stored (sync_details, run tags).
    """
    return str(first) if str(first) == str(last) else f"{first}..{last}"


def key_range(first_key: str, last_key: str) -> str:
    """One partition key, or a range in Dagster's notation: `2026-03-01...2026-03-31`."""
    return first_key if first_key == last_key else f"{first_key}...{last_key}"


def windows_between(period: Period, first_key: str, last_key: str) -> list[Window]:
    """Every window from the one keyed `first_key` to the one keyed `last_key`."""
    first, last = window_for_key(period, first_key), window_for_key(period, last_key)
    if last < first:
        raise BadPartitionKey(f"{period} partition range {key_range(first_key, last_key)} is reversed")
    return list(_iterate(first, last))


def _iterate(first: Window, last: Window) -> Iterator[Window]:
    window = first
    while window <= last:
        yield window
        window = window.next()


def windows_for_date(d: date) -> dict[Period, Window]:
    """What a daily tick for business date `d` aggregates: the four windows containing it."""
    return {period: window_containing(period, d) for period in PERIODS}
