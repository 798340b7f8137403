"""`sizeagg limits set|import|list`: the capacity limits the forecast measures against."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..core.settings import utc_now
from .preflight import check_database, database_errors, engine_for_url


def cmd_limits(args: argparse.Namespace) -> int:
    from ..core import limits

    source: Path | None = None
    if args.action == "import":
        source = Path(args.file)
        batch = limits.read_csv(source)
    elif args.action == "set":
        batch = [limits.Limit(args.instance, args.database, limits.parse_limit_mb(args.limit_mb), args.note)]
    engine = engine_for_url(existing=True)
    try:
        with database_errors(engine):
            check_database(engine, writes=args.action != "list")
            if args.action == "list":
                with engine.connect() as conn:
                    rows = limits.listing(conn)
            else:
                with engine.begin() as conn:  # all or nothing
                    written = limits.save(conn, batch, utc_now(), str(source or ""))
    finally:
        engine.dispose()
    if args.action == "list":
        print(f"{'instance':<20} {'database':<30} {'limit_mb':>12}  note")
        for limit in rows:
            database = limit.database or "(instance total)"
            print(f"{limit.instance:<20} {database:<30} {limit.limit_mb:>12,}  {limit.note or ''}")
    else:
        print(f"capacity limits: {written} set" + (f" from {source}" if source else f": {batch[0].what}"))
    return 0


def add_limits_parser(sub: Any, verbose: argparse.ArgumentParser) -> None:
    """The `limits` command and its three actions, on the `sizeagg` subparsers `sub`."""
    lim = sub.add_parser("limits", parents=[verbose], help="capacity limits the forecast measures against")
    lim_sub = lim.add_subparsers(dest="action", required=True)
    lim_set = lim_sub.add_parser("set", help="set (or replace) one limit")
    lim_set.add_argument("--instance", required=True, help="instances.name")
    lim_set.add_argument("--database", help="a database of the instance (default: the instance total)")
    lim_set.add_argument("--limit-mb", required=True, help="the limit in MB")
    lim_set.add_argument("--note", help="why this limit (e.g. the volume it lives on)")
    lim_sub.add_parser(
        "import", help="set the limits of a CSV file: instance,database,limit_mb,note"
    ).add_argument("file")
    lim_sub.add_parser("list", help="every limit")
    lim.set_defaults(func=cmd_limits)
