"""The daily tick with 1 vs 3 years of raw history, side by side on one PostgreSQL server.

A targeted re-measurement of the benchmark's last target (daily tick 3 y ÷ 1 y ≤ 1.3):
two schemas generated with the benchmark's data (2,000 × 25 × 400 days, and the same
extended to 1,130 days), `VACUUM (ANALYZE)` after loading, then ticks alternating
between the two schemas so that anything else on the machine weighs on both alike.

    python benchmarks/tick_history.py postgresql+psycopg2://USER@HOST:PORT/DB [--reps 9] [--quick]
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling modules

import aggregation_bench as bench
import datagen
import sqlalchemy as sa

from sizeagg_pipeline.core import schema
from sizeagg_pipeline.core.periods import Period

SCHEMAS = {"1y": "sizeagg_tick_1y", "3y": "sizeagg_tick_3y"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("url", help="postgresql+psycopg2://… (two schemas of its own, dropped after)")
    p.add_argument("--reps", type=int, default=9)
    p.add_argument("--quick", action="store_true", help="the benchmark's CI-sized data (a smoke run)")
    args = p.parse_args()
    cfg = bench.QUICK if args.quick else bench.DEFAULT
    engines: dict[str, sa.Engine] = {}
    try:
        for history, first in (("1y", cfg.first_day), ("3y", cfg.epoch)):
            url = bench.prepare_postgres(args.url, SCHEMAS[history])
            engine = engines[history] = schema.make_engine(url)
            schema.create_missing(engine)
            with engine.begin() as conn:
                datagen.add_instances(conn, cfg.instances)
            bench.log(f"{history}: generating {first}..{bench.LAST_DAY}")
            loader = datagen.loader_engine(url)
            datagen.add_days(
                loader, first, bench.LAST_DAY, databases=cfg.databases, epoch=cfg.epoch, progress=bench.log
            )
            loader.dispose()
        for engine in engines.values():
            bench.run_tick(engine, bench.LAST_DAY)  # the weekly..quarterly slices exist from here on
            datagen.settle(engine)

        clock = bench.Clock(engines["1y"])
        timings: dict[str, list[bench.Timing]] = {"1y": [], "3y": []}
        for rep in range(args.reps):
            for history in ("1y", "3y") if rep % 2 == 0 else ("3y", "1y"):
                bench.delete_slice(engines[history], Period.DAILY, bench.LAST_DAY)
                tick = functools.partial(bench.run_tick, engines[history], bench.LAST_DAY)
                timings[history].append(clock.time(tick)[1])
            bench.log(f"rep {rep}: 1y {timings['1y'][-1].wall:.2f} s, 3y {timings['3y'][-1].wall:.2f} s")
        one, three = bench.median(timings["1y"]), bench.median(timings["3y"])
        print(
            f"daily tick, median of {args.reps}: 1 y {one.wall:.2f} s, 3 y {three.wall:.2f} s, "
            f"ratio {three.wall / one.wall:.2f} (CPU {three.cpu / one.cpu:.2f}), "
            f"target ≤ {bench.TARGETS['tick']}"
        )
    finally:
        for engine in engines.values():
            engine.dispose()
        for name in SCHEMAS.values():
            bench.drop_postgres(args.url, name)


if __name__ == "__main__":
    main()
