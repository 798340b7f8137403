"""`sizeagg`: create the schema, write demo data, run a daily tick, list sessions.

Bad input and an unusable environment (settings, the database URL, a missing schema,
a date out of range) end in one line on stderr, exit status 2, and nothing written:
they are checked before the Dagster layer is imported. A session that fails ends in
one line and exit status 1. `-v/--verbose` adds Dagster's event log and tracebacks.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import traceback
import warnings
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import sqlalchemy as sa

if TYPE_CHECKING:
    import dagster as dg

from ..core import sessions, settings
from ..core.existing import init_db
from ..core.periods import BadPartitionKey, Period, parse_date, window_containing
from ..core.schema import (
    create_missing,
    database_size_aggregations,
    database_size_stats,
    instance_size_aggregations,
    instance_size_stats,
    sync_instance_records,
)
from ..core.settings import START_DATE_VAR, as_utc, calendar, state_dir
from .limits import add_limits_parser
from .preflight import BadInput, check_database, database_errors, engine_for_url

# The instance configuration shipped at the root of the repository.
SHIPPED_INSTANCE_YAML = Path(__file__).resolve().parents[2] / "dagster.yaml"
REASON_CHARS = 400  # a failed session's reason, as the one stderr line quotes it


def cmd_init_db(args: argparse.Namespace) -> int:
    engine = engine_for_url()
    print(f"database: {engine.url.render_as_string(hide_password=True)}")
    with database_errors(engine):
        report = init_db(engine, upgrade=args.upgrade)
    print(report)
    if report.problems:
        raise BadInput(report.verdict())
    return 0


def cmd_demo_data(args: argparse.Namespace) -> int:
    from ..core.demo_data import generate

    end = parse_date(args.end, "--end") if args.end else calendar().yesterday()
    days = args.days
    if args.quarter_aligned:  # start on the first day of the first day's quarter
        first = window_containing(Period.QUARTERLY, end - timedelta(days=max(days, 1) - 1)).start
        days = (end - first).days + 1
    engine = engine_for_url()
    with database_errors(engine):
        create_missing(engine)
        with engine.begin() as conn:
            summary = generate(
                conn,
                instance_count=args.instances,
                databases=args.databases,
                days=days,
                end=end,
                seed=args.seed,
            )
    print(f"demo data: {summary}")
    return 0


def cmd_start_date(_: argparse.Namespace) -> int:
    """The first day of the quarter of the earliest raw row: what SIZEAGG_START_DATE should be."""
    engine = engine_for_url(existing=True)
    try:
        with database_errors(engine):
            check_database(engine, writes=False)
            with engine.connect() as conn:
                firsts = [
                    conn.execute(sa.select(sa.func.min(table.c.collected_date))).scalar_one()
                    for table in (database_size_stats, instance_size_stats)
                ]
    finally:
        engine.dispose()
    known = [d if isinstance(d, date) else date.fromisoformat(str(d)) for d in firsts if d is not None]
    if not known:
        raise LookupError("no raw rows in database_size_stats or instance_size_stats: nothing to start from")
    print(window_containing(Period.QUARTERLY, min(known)).start.isoformat())
    return 0


def _days(text: str) -> list[date]:
    """`YYYY-MM-DD` or an inclusive range `YYYY-MM-DD..YYYY-MM-DD`, within the partitions."""
    first_text, _, last_text = text.partition("..")
    first = parse_date(first_text, "--date")
    last = parse_date(last_text, "--date") if last_text else first
    if last < first:
        raise BadPartitionKey(f"--date range {text!r} is reversed: write the earlier date first")
    business = calendar()
    if first < business.start_date:
        raise BadPartitionKey(
            f"--date {first} is before the first partition ({business.start_date}, {START_DATE_VAR}): "
            f"pass a date from {business.start_date} on"
        )
    today = business.today()
    if last > today:
        raise BadPartitionKey(
            f"--date {last} is in the future (today is {today} in {business.timezone}): "
            f"pass a date up to {today}"
        )
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def _dagster_instance() -> dg.DagsterInstance:
    import dagster as dg

    if not os.environ.get("DAGSTER_HOME"):
        os.environ["DAGSTER_HOME"] = str(state_dir() / "dagster_home")
    home = Path(os.environ["DAGSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists() and SHIPPED_INSTANCE_YAML.exists():
        shutil.copy(SHIPPED_INSTANCE_YAML, home / "dagster.yaml")
    return dg.DagsterInstance.get()


def _failure_reason(engine: sa.Engine, session_id: str) -> str:
    """What a failed session's records say, cut to one readable line."""
    records = sync_instance_records.c
    with engine.connect() as conn:
        reason = conn.execute(
            sa.select(records.error_message)
            .where(records.session_id == session_id, records.error_message.is_not(None))
            .limit(1)
        ).scalar_one_or_none()
    text = " ".join((reason or "no instance record gives a reason").split())
    return text if len(text) <= REASON_CHARS else text[:REASON_CHARS].rsplit(" ", 1)[0] + " …"


def cmd_run(args: argparse.Namespace) -> int:
    days = _days(args.date)
    engine = engine_for_url(existing=True)
    try:
        with database_errors(engine):
            check_database(engine, writes=True)
        if not args.verbose:
            warnings.filterwarnings("ignore", module="dagster")
        from ..definitions import defs
        from .run import Runner, tell

        failed = []
        with (
            _dagster_instance() as instance,
            Runner(
                defs, instance, verbose=args.verbose, progress=lambda line: print(line, flush=True)
            ) as runner,
        ):
            for day in days:
                summary = runner.tick(day)
                print(f"{day}: {summary}", flush=True)
                if summary.status != sessions.SessionStatus.COMPLETED:
                    failed.append(summary)
                    print(
                        f"sizeagg run: {day}: session {summary.status}: "
                        f"{_failure_reason(engine, summary.session_id)}: fix the cause, then run "
                        f"`sizeagg run --date {day}` again (details: `sizeagg sessions`, the runs in the UI)",
                        file=sys.stderr,
                        flush=True,
                    )
            for line in tell(instance, failed):
                print(f"alert: {line}", flush=True)
        return 1 if failed else 0
    finally:
        engine.dispose()


def cmd_sessions(args: argparse.Namespace) -> int:
    engine = engine_for_url(existing=True)
    with database_errors(engine):
        check_database(engine, writes=False)
        with engine.connect() as conn:
            for table in (database_size_aggregations, instance_size_aggregations):
                counts = conn.execute(
                    sa.select(table.c.period_type, sa.func.count()).group_by(table.c.period_type)
                ).all()
                print(f"{table.name}: " + ", ".join(f"{p} {n}" for p, n in sorted(counts)))
            rows = sessions.recent_sessions(conn, args.limit)
    print(f"{'started_at (UTC)':<20} {'status':<10} {'type':<15} total  ok  failed  session_id")
    for s in rows:
        started = as_utc(s.started_at).strftime("%Y-%m-%d %H:%M:%S") if s.started_at else "-"
        print(
            f"{started:<20} {s.status:<10} {s.sync_type:<15} {s.total_instances:>5} "
            f"{s.successful_instances:>3} {s.failed_instances:>7}  {s.session_id}"
        )
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error in one line like every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def parser() -> argparse.ArgumentParser:
    verbose = _Parser(add_help=False)
    verbose.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show Dagster's event log on the console, and tracebacks of errors",
    )
    p = _Parser(prog="sizeagg", description=__doc__, parents=[verbose])
    sub = p.add_subparsers(dest="command", required=True)
    init = sub.add_parser(
        "init-db", parents=[verbose], help="create missing tables; report on existing ones (docs/postgres.md)"
    )
    init.add_argument(
        "--upgrade",
        action="store_true",
        help="also widen the origin's numeric(5,2) percent columns, re-creating the views that read them",
    )
    init.set_defaults(func=cmd_init_db)
    demo = sub.add_parser("demo-data", parents=[verbose], help="write deterministic demo raw data")
    demo.add_argument("--instances", type=int, default=20)
    demo.add_argument("--databases", type=int, default=15)
    demo.add_argument("--days", type=int, default=120)
    demo.add_argument("--end", help="last collected_date (default: yesterday, business time)")
    demo.add_argument("--seed", type=int, default=42)
    demo.add_argument(
        "--quarter-aligned",
        action="store_true",
        help="start the data on the first day of its quarter (at least --days days), so every "
        "partition from that SIZEAGG_START_DATE on has data",
    )
    demo.set_defaults(func=cmd_demo_data)
    run = sub.add_parser("run", parents=[verbose], help="run the daily tick for a business date, in process")
    run.add_argument("--date", required=True, help="YYYY-MM-DD, or YYYY-MM-DD..YYYY-MM-DD for each day")
    run.set_defaults(func=cmd_run)
    sub.add_parser(
        "start-date",
        parents=[verbose],
        help="the first day of the quarter of the earliest raw row (for SIZEAGG_START_DATE)",
    ).set_defaults(func=cmd_start_date)
    ses = sub.add_parser("sessions", parents=[verbose], help="aggregate row counts and recent sessions")
    ses.add_argument("--limit", type=int, default=20)
    ses.set_defaults(func=cmd_sessions)
    add_limits_parser(sub, verbose)
    return p


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, sa.exc.DBAPIError):  # its str() adds the SQL and a link, on more lines
        return " ".join(str(exc.orig).split("\n")[0].split())
    return " ".join(str(exc).split())


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    args.verbose = getattr(args, "verbose", False)
    prefix = f"sizeagg {args.command}: error:"
    try:
        settings.check()
        return int(args.func(args))
    except KeyboardInterrupt:
        print(f"sizeagg {args.command}: interrupted", file=sys.stderr)
        return 130
    except (BadInput, ValueError, LookupError, RuntimeError, sa.exc.SQLAlchemyError) as exc:
        if args.verbose:
            traceback.print_exc()
        print(f"{prefix} {_one_line(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:
        if args.verbose:
            traceback.print_exc()
        hint = "" if args.verbose else " (run again with --verbose for the traceback)"
        print(f"{prefix} unexpected {type(exc).__name__}: {_one_line(exc)}{hint}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
