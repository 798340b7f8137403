"""Aggregation benchmark (issue 7): sizeagg against the floor and the origin's method.

Generates its own data (set-based, in the database), then measures side by side
in this process, on the same data:

1. sizeagg — `core.aggregation.aggregate`, the function the assets call — for one
   daily, weekly, monthly and quarterly partition (both levels) and a one-year
   range of daily partitions in one run;
2. the floor — one hand-written INSERT … SELECT per window into an empty copy
   of the aggregate table (floor.py); its rows must equal sizeagg's (asserted),
   with the bare scan of the rows it reads beside it;
3. the origin's row-by-row method (origin.py) on a subset of instances,
   extrapolated per group; its rows must equal sizeagg's too;
4. steady state — the daily partition with a year of daily aggregates stored;
5. peak RSS of a quarterly partition and of the one-year range, each in a child
   process, with 1 and with 3 years of raw history;
6. one daily tick (all four periods, both levels) with 1 and 3 years of history,
   side by side: on the first database and on a second one generated with 3 years.

Writes a markdown report (and a JSON twin) with the machine, the command line,
every timing and every ratio against its target. `--quick` is the CI-sized run.

    python benchmarks/aggregation_bench.py [--quick] [--postgres URL] [--output PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the sibling modules, when run as a script

import datagen  # noqa: E402
import floor  # noqa: E402
import origin  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from sqlalchemy import orm  # noqa: E402

from sizeagg_pipeline.core import aggregation, schema  # noqa: E402
from sizeagg_pipeline.core.levels import LEVELS, Level  # noqa: E402
from sizeagg_pipeline.core.periods import (  # noqa: E402
    Period,
    Window,
    window_containing,
    windows_between,
    windows_for_date,
)

LAST_DAY = date(2025, 12, 31)  # the last day of raw data; every window below ends by then
DATABASE = "sizeagg_bench"  # the SQLite file's stem or the PostgreSQL schema
HISTORY_DATABASE = f"{DATABASE}_3y"  # the 3-year database (see `run_engine`)
TARGETS = {
    "floor": 1.3,  # sizeagg ÷ floor, every window and the range
    "steady": 1.5,  # daily with a year stored ÷ daily on an empty table
    "origin": 20.0,  # origin ÷ sizeagg, every window (at least)
    "rss": 1.2,  # peak RSS 3 years ÷ 1 year
    "tick": 1.3,  # daily tick 3 years ÷ 1 year
}
T = TypeVar("T")
# Where bookkeeping_bench.py's section of results.md starts: rewriting the report keeps it.
BOOKKEEPING_MARKER = "<!-- bookkeeping benchmark: benchmarks/bookkeeping_bench.py writes from here on -->"


@dataclass(frozen=True)
class Config:
    instances: int
    databases: int
    days: int
    history_days: int
    reps: int
    big_reps: int
    origin_instances: int

    @property
    def first_day(self) -> date:
        return LAST_DAY - timedelta(days=self.days - 1)

    @property
    def epoch(self) -> date:
        """Day 0 of the size formula: the first day of the longest history."""
        return LAST_DAY - timedelta(days=self.history_days - 1)


DEFAULT = Config(
    instances=2000, databases=25, days=400, history_days=1130, reps=7, big_reps=3, origin_instances=20
)
QUICK = Config(instances=20, databases=5, days=400, history_days=1130, reps=3, big_reps=3, origin_instances=3)


def measured_windows() -> list[Window]:
    """One complete window per period, each with its previous window inside the data."""
    return [
        window_containing(Period.DAILY, LAST_DAY),
        window_containing(Period.WEEKLY, LAST_DAY - timedelta(days=7)),
        window_containing(Period.MONTHLY, LAST_DAY),
        window_containing(Period.QUARTERLY, LAST_DAY),
    ]


def year_range() -> list[Window]:
    """365 daily windows ending the day before LAST_DAY (so that LAST_DAY is a new day)."""
    last = LAST_DAY - timedelta(days=1)
    return windows_between(Period.DAILY, (last - timedelta(days=364)).isoformat(), last.isoformat())


# --------------------------------------------------------------------------- timing


@dataclass(frozen=True)
class Timing:
    """Wall seconds, and CPU seconds of this process plus the database server's processes."""

    wall: float
    cpu: float

    def __add__(self, other: Timing) -> Timing:
        return Timing(self.wall + other.wall, self.cpu + other.cpu)


def median(timings: Sequence[Timing]) -> Timing:
    return Timing(statistics.median(t.wall for t in timings), statistics.median(t.cpu for t in timings))


class Clock:
    """Wall time and CPU time; the CPU of a local PostgreSQL server's processes is added.

    On a machine shared with other work, wall time includes waiting for a core;
    CPU time does not, so the CPU ratio is the steadier one. SQLite runs in this
    process, so its CPU is this process's.
    """

    def __init__(self, engine: sa.Engine) -> None:
        self.postmaster: int | None = None
        if engine.dialect.name == "postgresql":
            try:
                with engine.connect() as conn:
                    data_dir = conn.execute(sa.text("SHOW data_directory")).scalar_one()
                pid = int(Path(data_dir, "postmaster.pid").read_text().split()[0])
                Path(f"/proc/{pid}/stat").read_text()
                self.postmaster = pid
            except Exception:  # remote or unreadable server: wall time and client CPU only
                self.postmaster = None

    def _server_cpu(self) -> float:
        if self.postmaster is None:
            return 0.0
        ticks = 0
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(entry.name) == self.postmaster or int(fields[1]) == self.postmaster:
                ticks += int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")

    def time(self, fn: Callable[[], T]) -> tuple[T, Timing]:
        cpu0, server0, wall0 = time.process_time(), self._server_cpu(), time.perf_counter()
        result = fn()
        wall = time.perf_counter() - wall0
        cpu = time.process_time() - cpu0 + self._server_cpu() - server0
        return result, Timing(wall, cpu)


# --------------------------------------------------------------------------- results


@dataclass
class WindowRow:
    window: str
    level: str
    rows: int
    sizeagg: Timing
    floor: Timing
    scan: Timing
    reps: int
    rows_equal: bool
    origin_orm_per_row: float | None = None  # seconds per aggregate row, on the subset
    origin_core_per_row: float | None = None
    origin_subset_rows: int = 0

    @property
    def ratio(self) -> float:
        return self.sizeagg.wall / self.floor.wall

    @property
    def cpu_ratio(self) -> float:
        return self.sizeagg.cpu / self.floor.cpu if self.floor.cpu else float("nan")

    def origin_estimate(self, per_row: float | None) -> float | None:
        return None if per_row is None else per_row * self.rows


@dataclass
class EngineResult:
    engine: str
    version: str
    url: str
    data: dict[str, Any] = field(default_factory=dict)
    windows: list[WindowRow] = field(default_factory=list)
    steady: dict[str, Timing] = field(default_factory=dict)
    memory: dict[str, dict[str, Any]] = field(default_factory=dict)
    ticks: dict[str, Timing] = field(default_factory=dict)
    plans: dict[str, list[str]] = field(default_factory=dict)
    load: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def both(self, window: str) -> WindowRow:
        """Both levels of a window, summed: the partition a run writes."""
        rows = [r for r in self.windows if r.window == window]
        total = WindowRow(
            window=window,
            level="both",
            rows=sum(r.rows for r in rows),
            sizeagg=rows[0].sizeagg + rows[1].sizeagg,
            floor=rows[0].floor + rows[1].floor,
            scan=rows[0].scan + rows[1].scan,
            reps=rows[0].reps,
            rows_equal=all(r.rows_equal for r in rows),
        )
        return total

    def origin_ratio(self, window: str, kind: str = "orm") -> float | None:
        rows = [r for r in self.windows if r.window == window]
        estimates = [r.origin_estimate(getattr(r, f"origin_{kind}_per_row")) for r in rows]
        if any(e is None for e in estimates):
            return None
        return sum(estimates) / sum(r.sizeagg.wall for r in rows)  # type: ignore[arg-type]

    def window_names(self) -> list[str]:
        return list(dict.fromkeys(r.window for r in self.windows))


# --------------------------------------------------------------------------- the engine under test


def log(text: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def truncate(conn: sa.Connection, table: sa.Table) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text(f"TRUNCATE {table.name}"))
    else:
        conn.execute(sa.delete(table))


def delete_slice(engine: sa.Engine, period: Period, start: date) -> None:
    with engine.begin() as conn:
        for level in LEVELS:
            t = level.target
            conn.execute(sa.delete(t).where(t.c.period_type == period.value, t.c.period_start == start))


def _execute(url: str, *statements: str) -> None:
    """Run `statements` in one transaction on a connection of their own."""
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(sa.text(statement))
    engine.dispose()


@contextlib.contextmanager
def scratch_database(server: str, name: str, keep: bool) -> Iterator[str]:
    """A fresh, empty database called `name` on `server` — a SQLite file `name`.db in the
    folder of a `sqlite:///folder` URL, or a schema of our own on a PostgreSQL server —
    and its URL; removed on the way out unless `keep`."""
    server_url = sa.make_url(server)
    if server_url.get_backend_name() == "sqlite":
        path = Path(server_url.database or ".").resolve() / f"{name}.db"
        path.parent.mkdir(parents=True, exist_ok=True)

        def drop() -> None:
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)

        drop()
        url = f"sqlite:///{path}"
    else:
        drop_schema = f"DROP SCHEMA IF EXISTS {name} CASCADE"

        def drop() -> None:
            _execute(server, drop_schema)

        _execute(server, drop_schema, f"CREATE SCHEMA {name}")
        scoped = server_url.update_query_dict({"options": f"-csearch_path={name}"})
        url = scoped.render_as_string(hide_password=False)
    try:
        yield url
    finally:
        if not keep:
            drop()


def generate(url: str, cfg: Config, first: date, label: str) -> tuple[float, dict[str, int]]:
    """Tables, instances and raw rows of every day from `first` to LAST_DAY, oldest first;
    the seconds it took and the rows of each raw table."""
    started = time.perf_counter()
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    schema.create_missing(engine)
    with engine.begin() as conn:
        datagen.add_instances(conn, cfg.instances)
    log(f"{label}: generating {cfg.instances} × {cfg.databases} × {(LAST_DAY - first).days + 1} days")
    loader = datagen.loader_engine(url)  # on SQLite it switches the journal off: the file to itself
    datagen.add_days(loader, first, LAST_DAY, databases=cfg.databases, epoch=cfg.epoch, progress=log)
    loader.dispose()
    datagen.settle(engine)
    seconds = time.perf_counter() - started
    rows = raw_counts(engine)
    engine.dispose()
    return seconds, rows


def raw_counts(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
            for t in (schema.database_size_stats, schema.instance_size_stats, schema.instances)
        }


def bare_scan(conn: sa.Connection, level: Level, lo: date, hi: date) -> None:
    """The rows a window and its previous window read, and nothing else."""
    raw = level.raw
    col = raw.c[level.sizes[0]]  # size_mb or total_size_mb
    conn.execute(
        sa.select(sa.func.count(), sa.func.sum(col)).where(raw.c.collected_date.between(lo, hi))
    ).one()


def measure_window(
    engine: sa.Engine,
    clock: Clock,
    level: Level,
    windows: list[Window],
    floor_table: sa.Table,
    reps: int,
) -> WindowRow:
    """sizeagg and the floor, interleaved, `reps` times each; then the equality check."""
    sizeagg_t: list[Timing] = []
    floor_t: list[Timing] = []
    scan_t: list[Timing] = []
    written = 0

    def run_sizeagg() -> None:
        nonlocal written
        with engine.begin() as conn:
            truncate(conn, level.target)
        result, t = clock.time(lambda: aggregation.aggregate(engine, level, windows))
        written = result.rows
        sizeagg_t.append(t)

    def run_floor() -> None:
        with engine.begin() as conn:
            truncate(conn, floor_table)
        now = datetime.now(UTC)

        def insert() -> None:
            with engine.begin() as conn:
                floor.run_floor(conn, level.name, floor_table, windows, now)

        floor_t.append(clock.time(insert)[1])

    for rep in range(reps):
        for step in (run_sizeagg, run_floor) if rep % 2 == 0 else (run_floor, run_sizeagg):
            step()
        with engine.connect() as conn:
            scan = functools.partial(bare_scan, conn, level, windows[0].previous().start, windows[-1].end)
            scan_t.append(clock.time(scan)[1])
    first, last = windows[0], windows[-1]
    differing = 0
    with engine.connect() as conn:
        for lo, hi in _chunks(first.start, last.start):
            differing += floor.rows_differ(conn, level.target, floor_table, first.period.value, lo, hi)
    if differing:
        raise AssertionError(f"floor and sizeagg differ in {differing} row(s): {level.name} {first}..{last}")
    return WindowRow(
        window=_window_name(windows),
        level=level.name,
        rows=written,
        sizeagg=median(sizeagg_t),
        floor=median(floor_t),
        scan=median(scan_t),
        reps=reps,
        rows_equal=True,
    )


def _chunks(first: date, last: date, days: int = 31) -> list[tuple[date, date]]:
    """Compare a long range a month at a time: the EXCEPT's sort stays small."""
    out = []
    lo = first
    while lo <= last:
        hi = min(last, lo + timedelta(days=days - 1))
        out.append((lo, hi))
        lo = hi + timedelta(days=1)
    return out


def _window_name(windows: list[Window]) -> str:
    if len(windows) == 1:
        return f"{windows[0].period} {windows[0].key}"
    return f"{windows[0].period} ×{len(windows)} {windows[0].key}..{windows[-1].key}"


def measure_origin(engine: sa.Engine, row: WindowRow, level: Level, window: Window, cfg: Config) -> None:
    """Time the origin's method on the first instances; check its rows equal sizeagg's."""
    subset = list(range(1, cfg.origin_instances + 1))
    with engine.begin() as conn:
        tables = origin.origin_tables(conn, floor.copy_table)
    target = tables[level.name]
    for kind in ("orm", "core"):
        with engine.begin() as conn:
            truncate(conn, target)
        if kind == "orm":
            with orm.Session(engine) as session:
                run = origin.run_method(origin.OrmStore(session, tables), level.name, window, subset)
        else:
            with engine.connect() as conn:
                run = origin.run_method(origin.CoreStore(conn, tables), level.name, window, subset)
                conn.commit()
        with engine.connect() as conn:
            theirs = origin.rows_of(conn, target, window.period.value, window.start, subset)
            ours = origin.rows_of(conn, level.target, window.period.value, window.start, subset)
        if theirs != ours:
            bad = (
                next((a, b) for a, b in zip(theirs, ours, strict=False) if a != b)
                if theirs and ours
                else None
            )
            raise AssertionError(
                f"origin method ({kind}) and sizeagg differ for {level.name} {window}: "
                f"{len(theirs)} vs {len(ours)} rows; first difference {bad}"
            )
        per_row = run.seconds / max(run.rows, 1)
        setattr(row, f"origin_{kind}_per_row", per_row)
        row.origin_subset_rows = run.rows


def run_tick(engine: sa.Engine, day: date) -> None:
    """What a daily tick aggregates: the four windows containing `day`, both levels."""
    for window in windows_for_date(day).values():
        for level in LEVELS:
            aggregation.aggregate(engine, level, [window])


def measure_ticks(clock: Clock, engines: dict[str, sa.Engine], reps: int) -> dict[str, Timing]:
    """The median daily tick on each database, the databases alternating within each repetition."""
    for engine in engines.values():
        run_tick(engine, LAST_DAY)  # warm-up: the weekly..quarterly slices exist from here on
    datagen.settle(next(iter(engines.values())))  # VACUUM (ANALYZE) covers the whole PostgreSQL database
    timings: dict[str, list[Timing]] = {history: [] for history in engines}
    for rep in range(reps):
        for history in engines if rep % 2 == 0 else reversed(engines):
            delete_slice(engines[history], Period.DAILY, LAST_DAY)
            timings[history].append(clock.time(functools.partial(run_tick, engines[history], LAST_DAY))[1])
        log("  tick: " + ", ".join(f"{h} {t[-1].wall:.2f} s" for h, t in timings.items()))
    return {history: median(t) for history, t in timings.items()}


def measure_memory(result: EngineResult, engine: sa.Engine, history: str, days: list[Window]) -> None:
    """Peak RSS of a child writing the quarterly partition afresh, and of one running the
    year range (whose aggregates are stored: the steady case)."""
    log(f"{result.engine}: peak RSS, {history}")
    quarter = measured_windows()[3]
    delete_slice(engine, Period.QUARTERLY, quarter.start)
    url = engine.url.render_as_string(hide_password=False)
    result.memory[f"quarterly {history}"] = child_rss(url, f"quarterly:{quarter.key}")
    result.memory[f"range {history}"] = child_rss(url, f"daily:{days[0].key}..{days[-1].key}")


def child_rss(url: str, spec: str) -> dict[str, Any]:
    """Run `spec` (period:first[..last]) in a fresh process and report its peak RSS."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", url, spec]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _peak_rss_mb() -> float:
    """This process's peak RSS: VmHWM, which starts afresh at exec.

    (getrusage's ru_maxrss does not: Linux carries the parent's peak at fork
    across execve, so a child of a big benchmark process would report the
    parent's memory.)
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_main(url: str, spec: str) -> None:
    period_text, _, keys = spec.partition(":")
    first_key, _, last_key = keys.partition("..")
    engine = schema.make_engine(url)
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))
    baseline = _peak_rss_mb()
    started = time.perf_counter()
    rows = 0
    if period_text != "none":
        windows = windows_between(Period(period_text), first_key, last_key or first_key)
        for level in LEVELS:
            rows += aggregation.aggregate(engine, level, windows).rows
    seconds = time.perf_counter() - started
    peak = _peak_rss_mb()
    print(json.dumps({"seconds": seconds, "rows": rows, "peak_mb": peak, "baseline_mb": baseline}))


def capture_plans(engine: sa.Engine, result: EngineResult, label: str) -> None:
    """The plans of sizeagg's statements for the daily window (the planner trap's case)."""
    window = measured_windows()[0]
    with engine.connect() as conn:
        for level in LEVELS:
            sides = aggregation._statements(level.name, window.period, conn.dialect.name)
            for side in sides:
                conn.execute(sa.text(f"DROP TABLE IF EXISTS {side.table.name}"))
                side.table.create(conn)
            plans = []
            for name, stmt, p in (
                ("group", sides[1].group_window, {"lo": window.start, "hi": window.end}),
                ("insert", sides[1].insert, {"start": window.start, "end": window.end, "now": None}),
            ):
                compiled = stmt.compile(conn)
                bound = compiled.construct_params(p)
                if conn.dialect.name == "sqlite":
                    args: Any = tuple(
                        bound[k] if not isinstance(bound[k], date) else bound[k].isoformat()
                        for k in compiled.positiontup  # type: ignore[union-attr]
                    )
                    lines = [r[3] for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", args)]
                else:
                    conn.execute(sa.text("SET LOCAL enable_nestloop = off"))  # as write_windows does
                    lines = [r[0] for r in conn.exec_driver_sql(f"EXPLAIN {compiled}", bound)]
                plans.append(f"{name}: " + " / ".join(line.strip() for line in lines))
            result.plans[f"{label} {level.name}"] = plans
        conn.rollback()


def run_engine(name: str, server: str, cfg: Config, keep: bool) -> EngineResult:
    """Everything, on one engine, in order, in two scratch databases generated here.

    The 3-year measurements use a second database rather than older days added to the
    first: a collector writes one day after another, so the raw table's physical order
    follows collected_date. Days added before the existing ones leave it out of order
    (PostgreSQL's correlation −0.38), and the planner then reads a quarter's rows with a
    sequential scan of the whole table — a layout no real history has, measured by the
    run of 0c07cf8 (tick 3 y ÷ 1 y 1.42 on PostgreSQL).
    """
    with (
        scratch_database(server, DATABASE, keep) as url,
        scratch_database(server, HISTORY_DATABASE, keep) as history_url,
    ):
        return measure_engine(name, url, history_url, cfg)


def measure_engine(name: str, url: str, history_url: str, cfg: Config) -> EngineResult:
    """Steps 1–6 of the module's docstring, on the (empty) databases at `url` and `history_url`."""
    started = time.perf_counter()
    engine = schema.make_engine(url)
    with engine.connect() as conn:
        version = (
            conn.execute(sa.text("SHOW server_version")).scalar_one()
            if conn.dialect.name == "postgresql"
            else conn.execute(sa.text("SELECT sqlite_version()")).scalar_one()
        )
    result = EngineResult(engine=name, version=str(version), url=sa.make_url(url).render_as_string())
    result.load.append(os.getloadavg()[0])
    clock = Clock(engine)
    engine.dispose()
    load_seconds, load_rows = generate(url, cfg, cfg.first_day, name)
    result.data |= load_rows | {"load_seconds": load_seconds}
    result.data["first_day"], result.data["last_day"] = str(cfg.first_day), str(LAST_DAY)

    with engine.begin() as conn:
        floors = {level.name: floor.floor_table(conn, level.name) for level in LEVELS}

    # 1–3: single windows, sizeagg vs floor vs origin
    for window in measured_windows():
        reps = cfg.reps if window.days <= 7 else cfg.big_reps
        for level in LEVELS:
            log(f"{name}: {window} {level.name} ×{reps}")
            row = measure_window(engine, clock, level, [window], floors[level.name], reps)
            measure_origin(engine, row, level, window, cfg)
            result.windows.append(row)
    empty_daily = result.both(result.windows[0].window).sizeagg

    # the one-year range in one run (leaves a year of daily aggregates stored)
    days = year_range()
    for level in LEVELS:
        log(f"{name}: one-year range {level.name}")
        row = measure_window(engine, clock, level, days, floors[level.name], 1)
        daily = next(r for r in result.windows if r.level == level.name and r.window.startswith("daily"))
        row.origin_orm_per_row, row.origin_core_per_row = daily.origin_orm_per_row, daily.origin_core_per_row
        result.windows.append(row)
    with engine.begin() as conn:
        for table in floors.values():
            truncate(conn, table)

    # 4: steady state — LAST_DAY is a new daily partition after a year of them
    day = measured_windows()[0]
    inserts, reruns = [], []
    for _ in range(cfg.reps):
        delete_slice(engine, Period.DAILY, day.start)
        inserts.append(clock.time(lambda: [aggregation.aggregate(engine, lv, [day]) for lv in LEVELS])[1])
        reruns.append(clock.time(lambda: [aggregation.aggregate(engine, lv, [day]) for lv in LEVELS])[1])
    result.steady = {"empty": empty_daily, "stored": median(inserts), "rerun": median(reruns)}

    # 5: peak RSS with one year of raw history, then with three (in the second database)
    measure_memory(result, engine, "1y", days)
    result.memory["baseline"] = child_rss(url, "none:")
    result.data["history_seconds"], result.data["history_rows"] = generate(history_url, cfg, cfg.epoch, name)
    history = schema.make_engine(history_url)
    log(f"{name}: one-year range on the 3-year database (the aggregates the 1-year one holds)")
    for level in LEVELS:
        aggregation.aggregate(history, level, days)
    measure_memory(result, history, "3y", days)

    # 6: the daily tick on both databases, side by side
    log(f"{name}: daily tick, 1 y and 3 y alternating")
    result.ticks = measure_ticks(clock, {"1y": engine, "3y": history}, cfg.reps)
    history.dispose()

    capture_plans(engine, result, "as generated")
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
            conn.commit()
        capture_plans(engine, result, "after ANALYZE")
    engine.dispose()
    result.load.append(os.getloadavg()[0])
    result.seconds = time.perf_counter() - started
    log(f"{name}: done in {result.seconds:.0f} s")
    return result


# --------------------------------------------------------------------------- report


def machine() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "unknown"
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cpu": f"{cpu}, {os.cpu_count()} cores",
        "memory": mem,
        "os": platform.platform(),
        "python": platform.python_version(),
        "sqlalchemy": sa.__version__,
    }


def _s(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x:.3f}" if x < 10 else f"{x:.1f}"


def _ratio(x: float | None, target: float | None = None, at_least: bool = False) -> str:
    if x is None:
        return "—"
    text = f"{x:.2f}" if x < 100 else f"{x:.0f}"
    if target is None:
        return text
    ok = x >= target if at_least else x <= target
    return f"{text} {'✓' if ok else '✗'}"


def render(results: list[EngineResult], cfg: Config, argv: Sequence[str], note: str | None) -> str:
    m = machine()
    lines = [
        "# Aggregation benchmark",
        "",
        f"Generated {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} by "
        f"`{shlex.join(['python', 'benchmarks/aggregation_bench.py', *argv])}`.",
        "",
        f"- Machine: {m['cpu']}, {m['memory']} RAM, {m['os']}; "
        f"Python {m['python']}, SQLAlchemy {m['sqlalchemy']}.",
        f"- Data: {cfg.instances:,} instances × {cfg.databases} databases × {cfg.days} days "
        f"({cfg.first_day}..{LAST_DAY}), one sample per database per day (≈0.5 % missing), "
        f"and a second database with {cfg.history_days} days of history for the 3-year measurements "
        "(each generated oldest day first, as a collector writes it).",
        f"- Repetitions: medians of {cfg.reps} (daily, weekly) and {cfg.big_reps} (monthly, quarterly); "
        "the one-year range once. sizeagg and the floor alternate within each repetition.",
        "- Seconds are wall time; *CPU* ratios use CPU time of this process plus the PostgreSQL "
        "server's processes, which waiting for a core does not inflate.",
    ]
    if note:
        lines.append(f"- Note: {note}")
    for r in results:
        lines.append(
            f"- {r.engine} {r.version}: run took {r.seconds / 60:.1f} min; load average "
            f"{r.load[0]:.1f} at start, {r.load[-1]:.1f} at end ({os.cpu_count()} cores)."
        )
    lines += ["", "## Targets", "", "| target | " + " | ".join(r.engine for r in results) + " |"]
    lines.append("|---|" + "---|" * len(results))
    for label, cells in _target_rows(results):
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    for r in results:
        lines += _engine_section(r)
    lines += _notes()
    return "\n".join(lines) + "\n"


def _target_rows(results: list[EngineResult]) -> list[tuple[str, list[str]]]:
    rows: list[tuple[str, list[str]]] = []
    names = results[0].window_names()
    for w in names:
        rows.append(
            (f"sizeagg ÷ floor ≤ {TARGETS['floor']}: {w} (CPU)", [_both_ratio(r, w) for r in results])
        )
    for w in names:
        rows.append(
            (
                f"origin ÷ sizeagg ≥ {TARGETS['origin']:.0f}: {w}",
                [_ratio(r.origin_ratio(w), TARGETS["origin"], at_least=True) for r in results],
            )
        )
    rows.append(
        (
            f"steady daily ÷ empty-table daily ≤ {TARGETS['steady']}",
            [_ratio(r.steady["stored"].wall / r.steady["empty"].wall, TARGETS["steady"]) for r in results],
        )
    )
    for what in ("quarterly", "range"):
        rows.append(
            (
                f"peak RSS 3 y ÷ 1 y ≤ {TARGETS['rss']}: {what}",
                [
                    _ratio(
                        r.memory[f"{what} 3y"]["peak_mb"] / r.memory[f"{what} 1y"]["peak_mb"], TARGETS["rss"]
                    )
                    for r in results
                ],
            )
        )
    rows.append(
        (
            f"daily tick 3 y ÷ 1 y ≤ {TARGETS['tick']}",
            [_ratio(r.ticks["3y"].wall / r.ticks["1y"].wall, TARGETS["tick"]) for r in results],
        )
    )
    return rows


def _both_ratio(r: EngineResult, window: str) -> str:
    b = r.both(window)
    return f"{_ratio(b.ratio, TARGETS['floor'])} ({b.cpu_ratio:.2f})"


def _engine_section(r: EngineResult) -> list[str]:
    d = r.data
    lines = [
        "",
        f"## {r.engine} {r.version}",
        "",
        f"Raw rows: {d['database_size_stats']:,} `database_size_stats`, {d['instance_size_stats']:,} "
        f"`instance_size_stats` (incl. soft-deleted), {d['instances']:,} instances; generated in "
        f"{d['load_seconds']:.0f} s. History for the 3-year rows: "
        f"{d.get('history_rows', {}).get('database_size_stats', 0):,} `database_size_stats` rows, "
        f"generated in {d.get('history_seconds', 0):.0f} s.",
        "",
        "### Windows: sizeagg, the floor, the origin's method",
        "",
        "| window | level | rows | sizeagg s | rows/s | floor s | bare scan s | sizeagg ÷ floor | CPU ratio "
        "| origin s (est.) | origin ÷ sizeagg | origin Core s (est.) | rows equal |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for w in r.window_names():
        rows = [x for x in r.windows if x.window == w]
        for x in [*rows, r.both(w)]:
            if x.level == "both":
                est = [y.origin_estimate(y.origin_orm_per_row) for y in rows]
                core = [y.origin_estimate(y.origin_core_per_row) for y in rows]
                o = sum(e for e in est if e is not None) if None not in est else None
                oc = sum(e for e in core if e is not None) if None not in core else None
                level, orat = "**both**", r.origin_ratio(w)
            else:
                o = x.origin_estimate(x.origin_orm_per_row)
                oc = x.origin_estimate(x.origin_core_per_row)
                level, orat = x.level, (None if o is None else o / x.sizeagg.wall)
            lines.append(
                f"| {w} | {level} | {x.rows:,} | {_s(x.sizeagg.wall)} | {x.rows / x.sizeagg.wall:,.0f} "
                f"| {_s(x.floor.wall)} | {_s(x.scan.wall)} | {_ratio(x.ratio)} | {_ratio(x.cpu_ratio)} "
                f"| {_s(o)} | {_ratio(orat)} | {_s(oc)} | {'yes' if x.rows_equal else 'NO'} |"
            )
    s = r.steady
    lines += [
        "",
        "### Steady state, memory, history",
        "",
        "| measure | first | second | ratio | target |",
        "|---|---:|---:|---:|---|",
        f"| daily partition (both levels), s: empty table → a year of daily aggregates stored "
        f"| {_s(s['empty'].wall)} | {_s(s['stored'].wall)} | {_ratio(s['stored'].wall / s['empty'].wall)} "
        f"| ≤ {TARGETS['steady']} |",
        f"| same, re-run over its own rows (upsert), s: year stored | {_s(s['stored'].wall)} "
        f"| {_s(s['rerun'].wall)} | {_ratio(s['rerun'].wall / s['stored'].wall)} | (information) |",
    ]
    for what, label in (("quarterly", "quarterly partition"), ("range", "one-year daily range")):
        a, b = r.memory[f"{what} 1y"], r.memory[f"{what} 3y"]
        lines.append(
            f"| peak RSS of a child running the {label} (both levels), MB: 1 y → 3 y of raw history "
            f"({_s(a['seconds'])} s → {_s(b['seconds'])} s) | {a['peak_mb']:.0f} | {b['peak_mb']:.0f} "
            f"| {_ratio(b['peak_mb'] / a['peak_mb'])} | ≤ {TARGETS['rss']} |"
        )
    lines.append(
        f"| peak RSS of a child that only imports sizeagg (with Dagster) and connects, MB "
        f"| {r.memory['baseline']['peak_mb']:.0f} | | | (baseline) |"
    )
    lines.append(
        f"| daily tick (4 periods × 2 levels), s: 1 y → 3 y of raw history | {_s(r.ticks['1y'].wall)} "
        f"| {_s(r.ticks['3y'].wall)} | {_ratio(r.ticks['3y'].wall / r.ticks['1y'].wall)} "
        f"| ≤ {TARGETS['tick']} |"
    )
    lines += ["", "### Query plans of sizeagg's daily statements", ""]
    for label, plans in r.plans.items():
        for p in plans:
            lines.append(f"- {label}, {p}")
    return lines


def _notes() -> list[str]:
    return [
        "",
        "## How to read this",
        "",
        "- *sizeagg*: `core.aggregation.aggregate` (what the assets call): validation, upsert (a plain "
        "insert when the slice is empty), stale-row delete, temp table, one transaction per level. "
        "Dagster's own per-run overhead is not included.",
        "- *floor*: one hand-written `INSERT INTO <empty copy, same unique key> SELECT` of the current "
        "window's GROUP BY LEFT JOIN the previous window's GROUP BY (for a range: one GROUP BY over "
        "the range joined to itself a day later). Its rows are compared with sizeagg's in the "
        "database (`EXCEPT`, all columns but id and the timestamps) — *rows equal* says they matched.",
        "- *bare scan*: `count(*)`, `sum(size)` over the window and the previous window — reading the rows, "
        "nothing else.",
        "- *origin*: the origin's row-by-row method (re-read instances; per instance load the window; per "
        "group select the existing row, select the previous window, write, commit) via SQLAlchemy's ORM as "
        "the origin did, timed on the first instances and extrapolated per aggregate row; *origin Core* is "
        "the same round trips as Core statements (a lower bound). Its rows are compared with sizeagg's too. "
        "The range's origin estimate uses the daily per-row time.",
        "- *steady state*: the daily partition after the one-year range stored 365 days of daily "
        "aggregates; *re-run* recomputes it over its own rows (every row an update).",
        "- *memory*: each child process runs one partition (or the range) for both levels from a fresh "
        "interpreter; on SQLite the database engine runs inside it, on PostgreSQL only the client does.",
        "- *daily tick*: the four windows containing the last day, both levels, with the weekly..quarterly "
        "slices already written (every tick rewrites them) and the daily slice new. Timed side by side "
        "on the two databases (both with a year of daily aggregates written and rewritten once), "
        "alternating within each repetition, after `VACUUM (ANALYZE)` on PostgreSQL.",
    ]


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="CI-sized data (20 × 5 × 400), fewer repetitions")
    p.add_argument("--instances", type=int)
    p.add_argument("--databases", type=int)
    p.add_argument("--days", type=int, help="days of raw data (≥ 400: the windows need them)")
    p.add_argument("--history-days", type=int, help="days of raw history for the 3-year measurements")
    p.add_argument("--reps", type=int, help="repetitions of daily/weekly measurements")
    p.add_argument("--big-reps", type=int, help="repetitions of monthly/quarterly measurements")
    p.add_argument("--origin-instances", type=int, help="instances the origin's method is timed on")
    p.add_argument("--postgres", metavar="URL", help="also run on PostgreSQL (own schema, dropped after)")
    p.add_argument("--no-sqlite", action="store_true", help="skip the SQLite run")
    p.add_argument("--workdir", type=Path, default=Path(".sizeagg/bench"), help="where the SQLite file goes")
    p.add_argument("--output", type=Path, default=HERE / "results.md")
    p.add_argument("--note", help="a line for the report (e.g. what else ran on the machine)")
    p.add_argument("--keep", action="store_true", help="keep the SQLite file / PostgreSQL schema")
    p.add_argument("--child", nargs=2, metavar=("URL", "SPEC"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.child:
        child_main(*args.child)
        return 0
    base = QUICK if args.quick else DEFAULT
    overrides = {
        k: getattr(args, k)
        for k in ("instances", "databases", "days", "history_days", "reps", "big_reps", "origin_instances")
        if getattr(args, k) is not None
    }
    cfg = Config(**{**asdict(base), **overrides})
    if cfg.days < 400 or cfg.history_days < cfg.days:
        raise SystemExit("--days must be ≥ 400 and --history-days ≥ --days")
    servers = {"SQLite": f"sqlite:///{args.workdir.resolve()}"} if not args.no_sqlite else {}
    if args.postgres:
        servers["PostgreSQL"] = args.postgres
    if not servers:
        raise SystemExit("nothing to run: --no-sqlite without --postgres")
    results = [run_engine(name, server, cfg, args.keep) for name, server in servers.items()]
    report = render(results, cfg, argv, args.note)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    previous = args.output.read_text() if args.output.exists() else ""
    if BOOKKEEPING_MARKER in previous:  # the other benchmark's section stays
        report += "\n" + BOOKKEEPING_MARKER + previous.split(BOOKKEEPING_MARKER, 1)[1]
    args.output.write_text(report)
    args.output.with_suffix(".json").write_text(json.dumps(_json(results, cfg), indent=1, default=str))
    log(f"wrote {args.output}")
    return 0


def _json(results: list[EngineResult], cfg: Config) -> dict[str, Any]:
    out: dict[str, Any] = {"config": asdict(cfg), "engines": []}
    for r in results:
        e = asdict(r)
        e["targets"] = dict(_target_rows([r]))
        e["both"] = {w: asdict(r.both(w)) | {"ratio": r.both(w).ratio} for w in r.window_names()}
        e["origin_ratio"] = {w: r.origin_ratio(w) for w in r.window_names()}
        out["engines"].append(e)
    return out


if __name__ == "__main__":
    sys.exit(main())
