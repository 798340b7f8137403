"""Bookkeeping benchmark (issue 18): session lookups and sensor evaluations stay flat with history.

Two application databases per engine, identical but for their session history:
*empty* has none; *history* has one completed session per day for `--history-days`
days (3 years by default), each with one record per instance (2,000 by default) and
the `sync_details` a real session writes — about 2.2 M records. Both share one
Dagster instance, so everything but the history is the same. Then, alternating
between the two within each repetition, in this process:

1. lookups: an execution's session and a session-step run's session (found, and
   missing), through `sizeagg_executions` — and, as *before*, through the LIKE scan
   of `sync_instance_records.sync_details` that sizeagg used until issue 18;
2. one evaluation of each bookkeeping sensor: the gate with seven pending executions
   (all their period runs succeeded, the session steps not yet launched), the
   backfill closer (a finished backfill with its session), the failure sensor (a
   failed session-step run whose session has ended), the janitor (one session
   running) and the dead-run healer — each also *before*, with the LIKE lookups;
3. `sizeagg run` (the CLI's `Runner.tick`) on a small dataset (one database per
   instance, 40 days) — also *before*.

Targets: every lookup ≤ 5 ms with history; every sensor and `sizeagg run` with history
≤ 1.2 × without. The report is a section of benchmarks/results.md (replaced if there,
else appended; the aggregation results above it are kept) plus a JSON twin.

    python benchmarks/bookkeeping_bench.py [--quick] [--postgres URL] [--no-sqlite] [--output PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the sibling modules, when run as a script

import dagster as dg  # noqa: E402
import datagen  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from aggregation_bench import BOOKKEEPING_MARKER, Clock, log, machine, scratch_database  # noqa: E402

from sizeagg_pipeline.cli.run import Runner  # noqa: E402
from sizeagg_pipeline.core import schema, sessions  # noqa: E402
from sizeagg_pipeline.core.owner import Owner  # noqa: E402
from sizeagg_pipeline.core.periods import windows_for_date  # noqa: E402
from sizeagg_pipeline.core.sessions import Outcome, SyncType  # noqa: E402
from sizeagg_pipeline.core.settings import DATABASE_URL_VAR  # noqa: E402
from sizeagg_pipeline.dagster_private import BulkActionStatus, PartitionBackfill  # noqa: E402
from sizeagg_pipeline.definitions import defs  # noqa: E402
from sizeagg_pipeline.defs.aggregates.jobs import PERIOD_JOBS  # noqa: E402
from sizeagg_pipeline.defs.sessions import backfills, dead_runs, failures, gate, janitor  # noqa: E402
from sizeagg_pipeline.defs.sessions.asset import aggregation_session, aggregation_session_job  # noqa: E402
from sizeagg_pipeline.defs.sessions.vocabulary import (  # noqa: E402
    PARTITION_TAG,
    ExecutionId,
    Trigger,
    execution_tags,
    owner_tags,
)

HISTORY_END = date(2025, 12, 31)  # the last day with a session in the history
TICK_DAY = date(2026, 1, 12)  # `sizeagg run`'s day; raw data covers the 40 days up to it
PENDING = [date(2026, 1, d) for d in range(2, 9)]  # the gate's seven pending executions
LOOKUP_TARGET = 0.005  # seconds
RATIO_TARGET = 1.2
ROOT = HERE.parent


@dataclass(frozen=True)
class Config:
    instances: int
    history_days: int
    reps: int
    run_reps: int
    before_reps: int


DEFAULT = Config(instances=2000, history_days=1100, reps=15, run_reps=5, before_reps=2)
QUICK = Config(instances=20, history_days=1100, reps=3, run_reps=1, before_reps=1)

# ------------------------------------------------------------------ the history, written by the database

_DETAILS = (
    '{"execution": "scheduled:%s", "dagster_run_ids": ["%s-1", "%s-2", "%s-3", "%s-4"], '
    '"session_run_id": "%s", "periods": {"daily": {"partitions": ["%s"], "database_rows": 25, '
    '"instance_rows": 1}, "weekly": {"partitions": ["%s"], "database_rows": 25, "instance_rows": 1}, '
    '"monthly": {"partitions": ["%s"], "database_rows": 25, "instance_rows": 1}, "quarterly": '
    '{"partitions": ["%s"], "database_rows": 25, "instance_rows": 1}}}'
)
_SESSION_COLUMNS = (
    "session_id, sync_type, sync_category, status, started_at, completed_at, "
    "total_instances, successful_instances, failed_instances, created_at, updated_at"
)
_RECORD_COLUMNS = (
    "session_id, instance_id, instance_name, sync_category, status, started_at, completed_at, "
    "items_synced, sync_details"
)
SQLITE_HISTORY = {
    "days": "WITH RECURSIVE days(d) AS (SELECT :lo UNION ALL SELECT d + 1 FROM days WHERE d < :hi) ",
    "sid": "printf('10000000-0000-4000-8000-%012d', d)",
    "day": "date(:first, '+' || d || ' days')",
    "at": "datetime(:first, '+' || d || ' days', '+20 hours') || '.000000'",
    "run": "printf('30000000-0000-4000-8000-%012d', d)",
    "from": "FROM days",
}
POSTGRES_HISTORY = {
    "days": "",
    "sid": "'10000000-0000-4000-8000-' || lpad(d::text, 12, '0')",
    "day": "(CAST(:first AS date) + d)::text",
    "at": "(CAST(:first AS date) + d + time '20:00') AT TIME ZONE 'UTC'",
    "run": "'30000000-0000-4000-8000-' || lpad(d::text, 12, '0')",
    "from": "FROM generate_series(CAST(:lo AS int), CAST(:hi AS int)) AS d",
}


def _history_sql(dialect: str) -> tuple[str, str]:
    q = POSTGRES_HISTORY if dialect == "postgresql" else SQLITE_HISTORY
    sessions_sql = (
        f"{q['days']}INSERT INTO sync_sessions ({_SESSION_COLUMNS}) "
        f"SELECT {q['sid']}, 'scheduled_task', 'aggregation', 'completed', {q['at']}, {q['at']}, "
        f":n, :n, 0, {q['at']}, {q['at']} {q['from']}"
    )
    day, run = q["day"], q["run"]
    args = ", ".join([day, run, run, run, run, run, day, day, day, day])
    details = f"format('{_DETAILS}', {args})" if dialect == "postgresql" else f"printf('{_DETAILS}', {args})"
    if dialect == "postgresql":
        details = f"CAST({details} AS jsonb)"
    records_sql = (
        f"{q['days']}INSERT INTO sync_instance_records ({_RECORD_COLUMNS}) "
        f"SELECT {q['sid']}, i.id, i.name, 'aggregation', 'completed', {q['at']}, {q['at']}, 100, {details} "
        f"{q['from']} CROSS JOIN instances AS i ORDER BY 1, 2"
    )
    return sessions_sql, records_sql


def write_history(url: str, cfg: Config) -> dict[str, float]:
    """One completed session a day for `history_days` days ending HISTORY_END, one record per instance."""
    first = HISTORY_END - timedelta(days=cfg.history_days - 1)
    loader = datagen.loader_engine(url)
    sessions_sql, records_sql = (sa.text(s) for s in _history_sql(loader.dialect.name))
    started = time.perf_counter()
    chunk = 100
    for lo in range(0, cfg.history_days, chunk):
        hi = min(lo + chunk, cfg.history_days) - 1
        params = {"lo": lo, "hi": hi, "first": first.isoformat(), "n": cfg.instances}
        with loader.begin() as conn:
            conn.execute(sessions_sql, params)
            conn.execute(records_sql, params)
        log(f"  history: {hi + 1}/{cfg.history_days} days of sessions written")
    loader.dispose()
    generated = time.perf_counter() - started
    engine = schema.make_engine(url)
    started = time.perf_counter()
    with engine.begin() as conn:  # what `sizeagg init-db` does once on an existing history
        linked = sessions.link_existing_sessions(conn)
    link_seconds = time.perf_counter() - started
    assert linked == cfg.history_days, linked
    datagen.settle(engine)
    engine.dispose()
    return {"generate_seconds": generated, "link_existing_seconds": link_seconds}


# ------------------------------------------------------------------ the lookups sizeagg used before issue 18


def _like(conn: sa.Connection, key: str, value: str) -> str | None:
    records = schema.sync_instance_records.c
    marker = f'%"{key}": "{value}"%'
    return conn.execute(
        sa.select(records.session_id).where(sa.cast(records.sync_details, sa.Text).like(marker)).limit(1)
    ).scalar_one_or_none()


def like_session_for_execution(conn: sa.Connection, execution_id: str) -> str | None:
    return _like(conn, "execution", execution_id)


def like_session_for_run(conn: sa.Connection, run_id: str) -> str | None:
    return _like(conn, "session_run_id", run_id)


@contextlib.contextmanager
def before() -> Iterator[None]:
    """Every caller looks sessions up as before issue 18: a LIKE scan of sync_details."""
    saved = sessions.session_for_execution, sessions.session_for_run
    sessions.session_for_execution, sessions.session_for_run = (
        like_session_for_execution,
        like_session_for_run,
    )
    try:
        yield
    finally:
        sessions.session_for_execution, sessions.session_for_run = saved


# ------------------------------------------------------------------ the Dagster side, shared by both


@dataclass
class Scene:
    """What each sensor evaluates: the same Dagster runs and backfill for both databases."""

    pending_cursor: str
    backfill: PartitionBackfill
    failed_session_run: dg.DagsterRun
    newest_execution: str = f"scheduled:{HISTORY_END}"
    newest_run: str = ""


def _use(url: str) -> None:
    os.environ[DATABASE_URL_VAR] = url  # the resource and the Runner read it when they start


def build_scene(instance: dg.DagsterInstance, urls: Sequence[str], cfg: Config) -> Scene:
    """The runs, backfill and sessions every sensor evaluation reads."""
    for day in PENDING:  # seven tick executions whose four period runs succeeded (what the gate reads)
        tags = execution_tags(ExecutionId.tick(day), trigger=Trigger.TICK)
        for period, window in windows_for_date(day).items():
            instance.create_run_for_job(
                defs.resolve_job_def(PERIOD_JOBS[period].name),
                tags={**tags, PARTITION_TAG: window.key},
                status=dg.DagsterRunStatus.SUCCESS,
            )
    now = datetime.now(UTC).timestamp()
    cursor = gate.GateCursor(after=now, pending={ExecutionId.tick(d): now for d in PENDING}).dump()
    backfill = PartitionBackfill.from_asset_partitions(
        backfill_id="benchbackfill",
        asset_graph=defs.resolve_asset_graph(),
        partition_names=None,
        asset_selection=[aggregation_session.key],
        backfill_timestamp=now,
        tags={},
        dynamic_partitions_store=instance,
        all_partitions=True,
        title=None,
        description=None,
        run_config=None,
    ).with_status(BulkActionStatus.COMPLETED_SUCCESS)
    instance.add_backfill(backfill)
    tick = execution_tags("scheduled:bench-failed", trigger=Trigger.TICK)
    failed = instance.create_run_for_job(
        defs.resolve_job_def(aggregation_session_job.name), tags=tick, status=dg.DagsterRunStatus.FAILURE
    )
    alive = instance.create_run_for_job(
        defs.resolve_job_def(aggregation_session_job.name),
        tags=owner_tags(Owner.current(), datetime.now(UTC).isoformat(timespec="seconds")),
        status=dg.DagsterRunStatus.STARTED,
    )
    for url in urls:  # each database: the backfill's session, the failed run's (ended), one running
        engine = schema.make_engine(url)
        with engine.begin() as conn:
            sessions.open_session(
                conn, sync_type=SyncType.MANUAL, details={"execution": "backfill:benchbackfill"}
            )
            ended = sessions.open_session(
                conn,
                sync_type=SyncType.SCHEDULED,
                details={"execution": "scheduled:bench-failed", "session_run_id": failed.run_id},
            )
            sessions.finalise_session(conn, ended, Outcome.failed("benchmark"))
            sessions.open_session(
                conn,
                sync_type=SyncType.MANUAL,
                details={"execution": "manual:bench-running", "session_run_id": alive.run_id},
            )
        engine.dispose()
    first = HISTORY_END - timedelta(days=cfg.history_days - 1)
    return Scene(
        cursor,
        backfill,
        failed,
        newest_run=f"30000000-0000-4000-8000-{(HISTORY_END - first).days:012d}",
    )


def evaluations(instance: dg.DagsterInstance, scene: Scene) -> dict[str, Callable[[sa.Engine], object]]:
    """What one evaluation of each bookkeeping sensor does, on an application database."""
    stale = timedelta(hours=3)
    return {
        "gate (7 pending executions)": lambda e: gate.gate_tick(
            instance, e, scene.pending_cursor, datetime.now(UTC), stale
        ),
        "backfill closer": lambda e: backfills.backfill_tick(instance, e, None, datetime.now(UTC)),
        "failure sensor": lambda e: failures.close_session_of_run(instance, e, scene.failed_session_run),
        "janitor": lambda e: janitor.sweep(instance, e, datetime.now(UTC), stale),
        "dead-run healer": lambda e: dead_runs.heal(instance, e, datetime.now(UTC)),
    }


def lookups(scene: Scene) -> dict[str, Callable[[sa.Connection], object]]:
    return {
        "session of an execution (found)": lambda c: sessions.session_for_execution(
            c, scene.newest_execution
        ),
        "session of an execution (missing)": lambda c: sessions.session_for_execution(
            c, "scheduled:1999-01-01"
        ),
        "session of a session-step run (found)": lambda c: sessions.session_for_run(c, scene.newest_run),
        "session of a session-step run (missing)": lambda c: sessions.session_for_run(c, "no-such-run"),
    }


# ------------------------------------------------------------------ measuring


@dataclass
class Row:
    name: str
    kind: str  # "lookup", "sensor", "run"
    empty: float = 0.0  # median seconds
    history: float = 0.0
    before_empty: float | None = None  # the same with the LIKE lookups
    before_history: float | None = None

    @property
    def ratio(self) -> float:
        return self.history / self.empty

    def meets(self) -> bool:
        if self.kind == "lookup":
            return self.history <= LOOKUP_TARGET
        return self.ratio <= RATIO_TARGET


@dataclass
class EngineResult:
    engine: str
    version: str
    data: dict[str, Any] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    seconds: float = 0.0
    load: list[float] = field(default_factory=list)


def _median_pair(
    engines: dict[str, sa.Engine], fn: Callable[[sa.Engine], object], reps: int
) -> tuple[float, float]:
    """Median wall seconds of fn on each database, alternating which goes first."""
    times: dict[str, list[float]] = {"empty": [], "history": []}
    clock = Clock(engines["empty"])  # wall time is what is compared
    for rep in range(reps):
        order = ["empty", "history"] if rep % 2 == 0 else ["history", "empty"]
        for name in order:
            _use(engines[name].url.render_as_string(hide_password=False))
            _, timing = clock.time(functools.partial(fn, engines[name]))
            times[name].append(timing.wall)
    return statistics.median(times["empty"]), statistics.median(times["history"])


def _in_connection(lookup: Callable[[sa.Connection], object]) -> Callable[[sa.Engine], object]:
    def run(engine: sa.Engine) -> object:
        with engine.connect() as conn:
            return lookup(conn)

    return run


def measure(
    instance: dg.DagsterInstance, engines: dict[str, sa.Engine], scene: Scene, cfg: Config
) -> list[Row]:
    rows = []
    for name, lookup in lookups(scene).items():
        fn = _in_connection(lookup)
        fn(engines["empty"]), fn(engines["history"])  # warm the pools and caches
        row = Row(name, "lookup", *_median_pair(engines, fn, cfg.reps * 3))
        with before():
            row.before_empty, row.before_history = _median_pair(engines, fn, cfg.before_reps)
        log(
            f"  {name}: {row.empty * 1000:.2f} / {row.history * 1000:.2f} ms "
            f"(before: {row.before_history:.3f} s)"
        )
        rows.append(row)
    for name, evaluation in evaluations(instance, scene).items():
        evaluation(engines["empty"]), evaluation(engines["history"])
        row = Row(name, "sensor", *_median_pair(engines, evaluation, cfg.reps))
        with before():
            row.before_empty, row.before_history = _median_pair(engines, evaluation, cfg.before_reps)
        log(f"  {name}: {row.empty:.3f} / {row.history:.3f} s (before: {row.before_history:.3f} s)")
        rows.append(row)

    def cli_run(engine: sa.Engine) -> object:
        with Runner(defs, instance, out=open(os.devnull, "w")) as runner:
            summary = runner.tick(TICK_DAY)
        assert summary.status == "completed", summary
        return summary

    row = Row("sizeagg run (one day, small dataset)", "run", *_median_pair(engines, cli_run, cfg.run_reps))
    with before():
        row.before_empty, row.before_history = _median_pair(engines, cli_run, cfg.before_reps)
    log(f"  sizeagg run: {row.empty:.2f} / {row.history:.2f} s (before: {row.before_history:.2f} s)")
    rows.append(row)
    return rows


def _prepare(url: str, cfg: Config) -> None:
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    schema.create_missing(engine)
    with engine.begin() as conn:
        datagen.add_instances(conn, cfg.instances)
    engine.dispose()
    loader = datagen.loader_engine(url)
    first = TICK_DAY - timedelta(days=39)
    datagen.add_days(loader, first, TICK_DAY, databases=1, epoch=first, progress=lambda _: None)
    loader.dispose()


def run_engine(name: str, server: str, cfg: Config, keep: bool) -> EngineResult:
    started = time.perf_counter()
    load = [os.getloadavg()[0]]
    with (
        scratch_database(server, "sizeagg_bookkeeping_empty", keep) as empty_url,
        scratch_database(server, "sizeagg_bookkeeping_3y", keep) as history_url,
        tempfile.TemporaryDirectory(prefix="sizeagg-bookkeeping-") as home,
    ):
        log(f"{name}: {cfg.instances} instances, {cfg.history_days} days of session history")
        for url in (empty_url, history_url):
            _prepare(url, cfg)
        data = write_history(history_url, cfg)
        shutil.copy(ROOT / "dagster.yaml", Path(home) / "dagster.yaml")
        engines = {"empty": schema.make_engine(empty_url), "history": schema.make_engine(history_url)}
        with engines["history"].connect() as conn:
            version = str(
                conn.execute(
                    sa.text("SELECT sqlite_version()" if name == "SQLite" else "SHOW server_version")
                ).scalar_one()
            )
            for table in (schema.sync_sessions, schema.sync_instance_records, schema.sizeagg_executions):
                data[f"{table.name}_rows"] = conn.execute(
                    sa.select(sa.func.count()).select_from(table)
                ).scalar_one()
        with dg.DagsterInstance.from_config(home) as instance:
            scene = build_scene(instance, [empty_url, history_url], cfg)
            rows = measure(instance, engines, scene, cfg)
        for engine in engines.values():
            engine.dispose()
    load.append(os.getloadavg()[0])
    return EngineResult(name, version, data, rows, time.perf_counter() - started, load)


# ------------------------------------------------------------------ the report


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return f"{seconds * 1000:.2f} ms" if seconds < 1 else f"{seconds:.2f} s"


def render(results: list[EngineResult], cfg: Config, argv: Sequence[str]) -> str:
    m = machine()
    records = cfg.instances * cfg.history_days
    lines = [
        BOOKKEEPING_MARKER,
        "",
        "# Bookkeeping benchmark",
        "",
        f"Generated {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} by "
        f"`{shlex.join(['python', 'benchmarks/bookkeeping_bench.py', *argv])}`.",
        "",
        f"- Machine: {m['cpu']}, {m['memory']} RAM, {m['os']}; "
        f"Python {m['python']}, SQLAlchemy {m['sqlalchemy']}.",
        f"- History: {cfg.history_days} completed sessions (one a day up to {HISTORY_END}) "
        f"× {cfg.instances:,} "
        f"instances = {records:,} `sync_instance_records` rows with real-sized `sync_details`; the other "
        "database has none. Both share one Dagster instance.",
        f"- Medians of {cfg.reps * 3} (lookups), {cfg.reps} (sensors), {cfg.run_reps} (`sizeagg run`), "
        "the two databases alternating; *before* (the LIKE scan sizeagg used until issue 18): "
        f"medians of {cfg.before_reps}.",
        f"- Targets: every lookup ≤ {LOOKUP_TARGET * 1000:.0f} ms with history; every sensor evaluation and "
        f"`sizeagg run` with history ≤ {RATIO_TARGET} × without.",
    ]
    for r in results:
        lines.append(
            f"- {r.engine} {r.version}: run took {r.seconds / 60:.1f} min; history generated in "
            f"{r.data['generate_seconds']:.0f} s, linked by `init-db` in "
            f"{r.data['link_existing_seconds']:.2f} s; "
            f"load average {r.load[0]:.1f} at start, {r.load[-1]:.1f} at end ({os.cpu_count()} cores)."
        )
    for r in results:
        lines += [
            "",
            f"## {r.engine} {r.version}",
            "",
            "| measurement | no history | 3-year history | history ÷ none | target "
            "| before: no history | before: 3-year history |",
            "|---|---:|---:|---:|---|---:|---:|",
        ]
        for row in r.rows:
            target = f"≤ {LOOKUP_TARGET * 1000:.0f} ms" if row.kind == "lookup" else f"≤ {RATIO_TARGET}"
            lines.append(
                f"| {row.name} | {_ms(row.empty)} | {_ms(row.history)} | {row.ratio:.2f} | "
                f"{target} {'✓' if row.meets() else '✗'} "
                f"| {_ms(row.before_empty)} | {_ms(row.before_history)} |"
            )
    return "\n".join(lines) + "\n"


def write_section(path: Path, section: str) -> None:
    """Replace the bookkeeping section of `path` (from its marker to the end), or append it."""
    text = path.read_text() if path.exists() else ""
    head = text.split(BOOKKEEPING_MARKER, 1)[0].rstrip("\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text((head + "\n\n" if head else "") + section)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="CI-sized: 20 instances, fewer repetitions")
    p.add_argument("--instances", type=int)
    p.add_argument("--history-days", type=int)
    p.add_argument("--postgres", metavar="URL", help="also run on PostgreSQL (own schemas, dropped after)")
    p.add_argument("--no-sqlite", action="store_true", help="skip the SQLite run")
    p.add_argument("--workdir", type=Path, default=Path(".sizeagg/bench"), help="where the SQLite files go")
    p.add_argument("--output", type=Path, default=HERE / "results.md")
    p.add_argument("--keep", action="store_true", help="keep the SQLite files / PostgreSQL schemas")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    base = QUICK if args.quick else DEFAULT
    overrides = {k: getattr(args, k) for k in ("instances", "history_days") if getattr(args, k) is not None}
    cfg = Config(**{**asdict(base), **overrides})
    servers = {} if args.no_sqlite else {"SQLite": f"sqlite:///{args.workdir.resolve()}"}
    if args.postgres:
        servers["PostgreSQL"] = args.postgres
    if not servers:
        raise SystemExit("nothing to run: --no-sqlite without --postgres")
    results = [run_engine(name, server, cfg, args.keep) for name, server in servers.items()]
    write_section(args.output, render(results, cfg, argv))
    payload = {
        "config": asdict(cfg),
        "engines": [asdict(r) | {"meets": [row.meets() for row in r.rows]} for r in results],
    }
    args.output.with_name("bookkeeping.json").write_text(json.dumps(payload, indent=1, default=str))
    log(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
