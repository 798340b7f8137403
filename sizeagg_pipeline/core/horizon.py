"""The raw-data horizon: the first day from which a raw table still holds all it was given.

Raw rows go away: sizeagg's own retention (`core/retention.py`), the platform dropping
`<table>_YYYY_MM` month partitions, or a plain `DELETE … WHERE collected_date < X`. An
aggregate row is a function of the raw rows of its window and of the previous window,
so once rows of either are gone a rewrite would compute it from less history: the
slice would be deleted, or recomputed from the days that are left. A write therefore
leaves every window whose previous window starts before the horizon exactly as it is
(`core/aggregation.py`), and so do the late-data sensor and the checks.

The horizon of a raw table is the later of two days:

* `raw_horizons.purged_before`: sizeagg's retention deleted every row before it. It is
  recorded, and committed, before the first row goes.
* the earliest raw day left, when raw data that sizeagg saw is missing: the table held
  an earlier day when a write ran (`raw_horizons.first_raw_day`, recorded by the
  writes), or an aggregate window ends before it (a row exists only for a window that
  had raw rows).

A collector that was down leaves a gap after the earliest day, which moves nothing;
raw data that starts after the first partition (a first history) was never read
before, so nothing of it is "gone". The oldest raw days removed are always read as a
purge, whoever removed them (docs/design.md).
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from .levels import LEVELS, Level
from .periods import PERIODS, Period, Window, key_range, windows_between
from .schema import raw_horizons
from .settings import utc_now

EVERYTHING = date.max  # the horizon of a raw table of which no row sizeagg saw is left


@dataclass(frozen=True)
class Horizon:
    """What is known about one raw table's history, as one write (or one check) read it."""

    raw_table: str
    day: date | None  # windows whose previous window starts before it are kept; None: nothing is gone
    earliest_raw_day: date | None  # the earliest collected_date in the table now
    first_raw_day: date | None  # the earliest raw day the table held when a write ran (recorded)
    purged_before: date | None  # sizeagg's retention deleted every row before it (recorded)
    seen_by: date | None  # raw data existed on or before this day (first_raw_day, aggregates)
    recorded: bool = True  # raw_horizons exists (init-db creates it)

    def keeps(self, window: Window) -> bool:
        """Is `window` left as it is: does its previous window start before the horizon?"""
        return self.day is not None and window.previous().start < self.day

    @property
    def gone(self) -> str:
        """What is missing, in words ("raw data before 2026-02-01 is gone")."""
        if self.day is None:
            return "no raw data is gone"
        if self.day == EVERYTHING:
            return f"no raw data is left in {self.raw_table}"
        return f"raw data before {self.day} is gone"

    @property
    def why(self) -> str:
        """How sizeagg knows: its retention's record, or raw days it saw that are missing."""
        reasons = []
        if self.purged_before is not None:
            reasons.append(f"sizeagg's retention deleted the rows before {self.purged_before}")
        if self.seen_by is not None and self.evidence:
            now = f"the earliest is {self.earliest_raw_day}" if self.earliest_raw_day else "none is left"
            reasons.append(f"sizeagg saw raw data of {self.seen_by} or earlier, {now}")
        return "; ".join(reasons) or "every raw day sizeagg saw is still there"

    @property
    def evidence(self) -> bool:
        """Are raw days that sizeagg saw (or aggregated) missing from the table now?"""
        if self.seen_by is None:
            return False
        return self.earliest_raw_day is None or self.earliest_raw_day > self.seen_by

    def text(self) -> str:
        """The horizon as the raw assets' metadata shows it."""
        return "none" if self.day is None else ("everything" if self.day == EVERYTHING else str(self.day))


@functools.cache
def _horizon_query(level: Level, recorded: bool) -> sa.Select:
    """One statement, index lookups only: the earliest raw day, the record, each period's first window.

    Built once per level (as the write's own statements are), so that each write pays
    for running it, not for building and compiling it.
    """
    raw, target, h = level.raw, level.target, raw_horizons
    record = [
        sa.select(column).where(h.c.raw_table == raw.name).scalar_subquery()
        if recorded
        else sa.null().label(column.name)
        for column in (h.c.first_raw_day, h.c.purged_before)
    ]
    first_ends = [
        sa.select(target.c.period_end)
        .where(target.c.period_type == period.value)
        .order_by(target.c.period_start)
        .limit(1)
        .scalar_subquery()
        for period in PERIODS
    ]
    return sa.select(
        sa.select(sa.func.min(raw.c.collected_date)).scalar_subquery(),
        *record,
        *first_ends,
    )


def _as_date(value: object) -> date | None:
    # SQLite hands back a scalar subquery's date as text.
    if value is None or isinstance(value, date):
        return value
    return date.fromisoformat(str(value))


def read_horizon(conn: sa.Connection, level: Level, recorded: bool | None = None) -> Horizon:
    """The horizon of `level`'s raw table, from the table, its record and the level's aggregates.

    One query of index lookups (min collected_date, the record, the first window of
    each period type): no scan of raw or aggregate rows, whatever the history.
    `recorded` says whether `raw_horizons` exists (None: look).
    """
    if recorded is None:
        recorded = sa.inspect(conn).has_table(raw_horizons.name)
    row = conn.execute(_horizon_query(level, recorded)).one()
    earliest, first, purged, *ends = (_as_date(v) for v in row)
    known = [d for d in (first, *ends) if d is not None]
    seen_by = min(known) if known else None
    facts = Horizon(level.raw.name, None, earliest, first, purged, seen_by, recorded)
    days = [d for d in (purged, (earliest or EVERYTHING) if facts.evidence else None) if d is not None]
    return Horizon(level.raw.name, max(days) if days else None, earliest, first, purged, seen_by, recorded)


def horizons(conn: sa.Connection) -> dict[str, Horizon]:
    """Level name → horizon of its raw table."""
    return {level.name: read_horizon(conn, level) for level in LEVELS}


def _upsert(conn: sa.Connection, raw_table: str, values: dict[str, object]) -> None:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    values = {**values, "updated_at": utc_now()}
    insert = dialect.insert(raw_horizons).values(raw_table=raw_table, **values)
    conn.execute(insert.on_conflict_do_update(index_elements=["raw_table"], set_=values))


def remember_first_raw_day(conn: sa.Connection, horizon: Horizon) -> None:
    """Record the table's earliest raw day as a write sees it, when earlier than the one recorded.

    Only while no raw day sizeagg saw is missing: then the earliest day now is where
    the raw history starts, and a later purge (of the platform's partitions and of
    the aggregates with them) cannot pass for a first history. Written only when it
    changes: the first write, or a history extended back.
    """
    earliest = horizon.earliest_raw_day
    if earliest is None or horizon.evidence or not horizon.recorded:
        return
    if horizon.first_raw_day is None or earliest < horizon.first_raw_day:
        _upsert(conn, horizon.raw_table, {"first_raw_day": earliest})


def record_purge(conn: sa.Connection, raw_table: str, before: date) -> None:
    """sizeagg's retention is about to delete every row of `raw_table` before `before`."""
    _upsert(conn, raw_table, {"purged_before": before})


# --------------------------------------------------------------------------- kept windows


@dataclass(frozen=True)
class Kept:
    """A contiguous run of windows of one table left as they were because of the horizon."""

    table: str
    first: Window
    last: Window
    windows: int
    rows: int  # aggregate rows in those windows, both kept
    gone: str  # Horizon.gone

    @property
    def period(self) -> Period:
        return self.first.period

    @property
    def partitions(self) -> str:
        return key_range(self.first.key, self.last.key)

    def __str__(self) -> str:
        many = f" ({self.windows} partitions)" if self.windows > 1 else ""
        return f"kept {self.rows} rows of {self.period} {self.partitions}{many} in {self.table}: {self.gone}"


def split_kept(horizon: Horizon, windows: Sequence[Window]) -> tuple[list[Window], list[Window]]:
    """(kept, written): the windows before the horizon's reach (a leading run), and the rest."""
    kept = [w for w in windows if horizon.keeps(w)]
    return kept, list(windows[len(kept) :])


def kept_rows(conn: sa.Connection, level: Level, horizon: Horizon, kept: Sequence[Window]) -> Kept | None:
    """The kept windows with their row count (one index range count), or None when none are kept."""
    if not kept:
        return None
    target = level.target
    rows = conn.execute(
        sa.select(sa.func.count())
        .select_from(target)
        .where(
            target.c.period_type == kept[0].period.value,
            target.c.period_start.between(kept[0].start, kept[-1].start),
        )
    ).scalar_one()
    return Kept(target.name, kept[0], kept[-1], len(kept), rows, horizon.gone)


def kept_in_slices(
    conn: sa.Connection,
    slices: Mapping[Period, Sequence[tuple[date, date]]],
    levels: Mapping[Period, Collection[str]] | None = None,
) -> list[Kept]:
    """What the writes of these slices kept (per period, (first, last) window starts of each run).

    Read at the session's end from the horizon then: a horizon only moves forward, so
    a retention run in between could only add windows to the list, never hide one.
    """
    result = []
    for level in LEVELS:
        horizon = read_horizon(conn, level)
        if horizon.day is None:
            continue
        for period, ranges in slices.items():
            if levels is not None and level.name not in levels.get(period, ()):
                continue
            for first, last in ranges:
                windows = windows_between(period, first.isoformat(), last.isoformat())
                kept = kept_rows(conn, level, horizon, split_kept(horizon, windows)[0])
                if kept is not None:
                    result.append(kept)
    return result
