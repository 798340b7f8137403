"""`sizeagg`: create the schema, write demo data, run a daily tick, list sessions."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import warnings
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

if TYPE_CHECKING:
    import dagster as dg

from ..core import sessions
from ..core.existing import init_db
from ..core.periods import BadPartitionKey, Period, parse_date, window_containing
from ..core.schema import (
    create_missing,
    database_size_aggregations,
    database_size_stats,
    instance_size_aggregations,
    instance_size_stats,
    make_engine,
)
from ..core.settings import as_utc, calendar, database_url, state_dir

# The instance configuration shipped at the root of the repository.
SHIPPED_INSTANCE_YAML = Path(__file__).resolve().parents[2] / "dagster.yaml"


def _engine() -> sa.Engine:
    return make_engine(database_url())


def cmd_init_db(_: argparse.Namespace) -> int:
    engine = _engine()
    print(f"database: {engine.url.render_as_string(hide_password=True)}")
    report = init_db(engine)
    print(report)
    return 1 if report.problems else 0


def cmd_demo_data(args: argparse.Namespace) -> int:
    from ..core.demo_data import generate

    end = parse_date(args.end, "--end") if args.end else calendar().yesterday()
    days = args.days
    if args.quarter_aligned:  # start on the first day of the first day's quarter
        first = window_containing(Period.QUARTERLY, end - timedelta(days=max(days, 1) - 1)).start
        days = (end - first).days + 1
    engine = _engine()
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
    engine = _engine()
    with engine.connect() as conn:
        firsts = [
            conn.execute(sa.select(sa.func.min(table.c.collected_date))).scalar_one()
            for table in (database_size_stats, instance_size_stats)
        ]
    known = [d if isinstance(d, date) else date.fromisoformat(str(d)) for d in firsts if d is not None]
    if not known:
        raise LookupError("no raw rows in database_size_stats or instance_size_stats: nothing to start from")
    print(window_containing(Period.QUARTERLY, min(known)).start.isoformat())
    return 0


def _days(text: str) -> list[date]:
    """`YYYY-MM-DD` or an inclusive range `YYYY-MM-DD..YYYY-MM-DD`."""
    first_text, _, last_text = text.partition("..")
    first = parse_date(first_text, "--date")
    last = parse_date(last_text, "--date") if last_text else first
    if last < first:
        raise BadPartitionKey(f"--date range {text!r} is reversed")
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


def cmd_run(args: argparse.Namespace) -> int:
    days = _days(args.date)
    start = calendar().start_date
    if days[0] < start:
        raise BadPartitionKey(f"--date {days[0]} is before the first partition ({start}, SIZEAGG_START_DATE)")
    warnings.filterwarnings("ignore", module="dagster")
    from .. import defs
    from .run import run_tick

    failed = 0
    with _dagster_instance() as instance:
        for day in days:
            summary = run_tick(defs, instance, day)
            print(f"{day}: {summary}", flush=True)
            failed += summary.status != sessions.SessionStatus.COMPLETED
    return 1 if failed else 0


def cmd_sessions(args: argparse.Namespace) -> int:
    engine = _engine()
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


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sizeagg", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("init-db", help="create missing tables (never drops or alters)").set_defaults(
        func=cmd_init_db
    )
    demo = sub.add_parser("demo-data", help="write deterministic demo raw data")
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
    run = sub.add_parser("run", help="run the daily tick for a business date, in process")
    run.add_argument("--date", required=True, help="YYYY-MM-DD, or YYYY-MM-DD..YYYY-MM-DD for each day")
    run.set_defaults(func=cmd_run)
    sub.add_parser(
        "start-date", help="the first day of the quarter of the earliest raw row (for SIZEAGG_START_DATE)"
    ).set_defaults(func=cmd_start_date)
    ses = sub.add_parser("sessions", help="aggregate row counts and recent sessions")
    ses.add_argument("--limit", type=int, default=20)
    ses.set_defaults(func=cmd_sessions)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, LookupError, RuntimeError, sa.exc.SQLAlchemyError) as exc:
        print(f"sizeagg {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
