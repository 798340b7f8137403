"""The floor: the best hand-written SQL for the rows one sizeagg write produces.

One ``INSERT INTO <empty copy of the aggregate table, same unique key> SELECT …``:
the current window's GROUP BY with every aggregate of the contract, LEFT JOINed
to the previous window's GROUP BY (sums and counts only) for the change columns.
No validation, no upsert, no stale-row delete, no temp table, no session. The SQL
is written out here independently of `core/aggregation.py`, so that the equality
check (`rows_differ`) also cross-checks sizeagg's arithmetic.

A range of daily windows is one GROUP BY over the range and the day before it,
joined to itself shifted by a day (the best one statement can do: one scan).
"""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa

from sizeagg_pipeline.core.periods import Window
from sizeagg_pipeline.core.schema import (
    PERCENT_LIMIT_HUNDREDTHS,
    database_size_aggregations,
    instance_size_aggregations,
)

FLOOR_PREFIX = "floor_"
NOT_COMPARED = {"id", "calculated_at", "created_at"}


def copy_table(conn: sa.Connection, source: sa.Table, name: str, key: list[str] | None = None) -> sa.Table:
    """An empty copy of `source` (same columns and types) with a unique key; replaces any old copy.

    `key` defaults to the source's own unique key; the origin's copy passes the
    origin's column order.
    """
    unique = next(c for c in source.constraints if isinstance(c, sa.UniqueConstraint))
    columns = key or [c.name for c in unique.columns]
    metadata = sa.MetaData()
    table = sa.Table(
        name,
        metadata,
        *(c._copy() for c in source.columns),
        sa.UniqueConstraint(*columns, name=f"uq_{name}"),
    )
    conn.execute(sa.text(f"DROP TABLE IF EXISTS {name}"))
    metadata.create_all(conn)
    return table


def floor_table(conn: sa.Connection, level: str) -> sa.Table:
    source = database_size_aggregations if level == "database" else instance_size_aggregations
    return copy_table(conn, source, FLOOR_PREFIX + source.name)


# --------------------------------------------------------------------------- arithmetic as SQL text


def _round_half_away(num: str, den: str) -> str:
    """round(num / den) half away from zero, den > 0, in integers."""
    up = f"(2 * ({num}) + ({den})) / (2 * ({den}))"
    down = f"-((-2 * ({num}) + ({den})) / (2 * ({den})))"
    return f"(CASE WHEN ({num}) >= 0 THEN {up} ELSE {down} END)"


def _percent(s1: str, n1: str, s2: str, n2: str) -> str:
    """round2((mean1 − mean2) / mean2 × 100), clamped, 0 when mean2 ≤ 0; means are S/n."""
    h = _round_half_away(f"(({s1}) * ({n2}) - ({s2}) * ({n1})) * 10000", f"({n1}) * ({s2})")
    lim = PERCENT_LIMIT_HUNDREDTHS
    clamped = f"(CASE WHEN {h} > {lim} THEN {lim} WHEN {h} < -{lim} THEN -{lim} ELSE {h} END)"
    return f"(CASE WHEN ({s2}) <= 0 THEN 0 ELSE {clamped} END)"


def _change_mb(s1: str, n1: str, s2: str, n2: str) -> str:
    """trunc(mean1 − mean2) = (S1·n2 − S2·n1) / (n1·n2): integer division truncates on both engines."""
    return f"((({s1}) * ({n2}) - ({s2}) * ({n1})) / (({n1}) * ({n2})))"


def _hundredths_to_percent(h: str) -> str:
    return f"({h}) / 100.0"


# --------------------------------------------------------------------------- the two levels


DB_CUR = """
    SELECT {window_cols} instance_id, database_name, COUNT(*) AS n,
           CAST(SUM(size_mb) AS BIGINT) AS s, MAX(size_mb) AS mx, MIN(size_mb) AS mn,
           CAST(SUM(data_size_mb) AS BIGINT) AS ds, COUNT(data_size_mb) AS dn,
           MAX(data_size_mb) AS dmx, MIN(data_size_mb) AS dmn,
           CAST(SUM(log_size_mb) AS BIGINT) AS ls, COUNT(log_size_mb) AS ln,
           MAX(log_size_mb) AS lmx, MIN(log_size_mb) AS lmn
    FROM database_size_stats WHERE collected_date BETWEEN {lo} AND {hi}
    GROUP BY {group_cols} instance_id, database_name"""
DB_PREV = """
    SELECT instance_id, database_name, COUNT(*) AS n, CAST(SUM(size_mb) AS BIGINT) AS s,
           CAST(SUM(data_size_mb) AS BIGINT) AS ds, COUNT(data_size_mb) AS dn,
           CAST(SUM(log_size_mb) AS BIGINT) AS ls, COUNT(log_size_mb) AS ln
    FROM database_size_stats WHERE collected_date BETWEEN :ps AND :pe
    GROUP BY instance_id, database_name"""
DB_COLUMNS = (
    "instance_id, database_name, period_type, period_start, period_end, "
    "avg_size_mb, max_size_mb, min_size_mb, data_count, "
    "avg_data_size_mb, max_data_size_mb, min_data_size_mb, "
    "avg_log_size_mb, max_log_size_mb, min_log_size_mb, "
    "size_change_mb, size_change_percent, data_size_change_mb, data_size_change_percent, "
    "log_size_change_mb, log_size_change_percent, growth_rate, calculated_at, created_at"
)


def _db_values(start: str, end: str) -> str:
    pct = _hundredths_to_percent(_percent("c.s", "c.n", "p.s", "p.n"))
    size_pct = f"CASE WHEN p.n IS NULL THEN 0 ELSE {pct} END"
    parts = [
        f"c.instance_id, c.database_name, :ptype, {start}, {end}",
        "c.s / c.n, c.mx, c.mn, c.n",
        "CASE WHEN c.dn > 0 THEN c.ds / c.dn END, c.dmx, c.dmn",
        "CASE WHEN c.ln > 0 THEN c.ls / c.ln END, c.lmx, c.lmn",
        f"CASE WHEN p.n IS NULL THEN 0 ELSE {_change_mb('c.s', 'c.n', 'p.s', 'p.n')} END",
        size_pct,
    ]
    for s, n in (("ds", "dn"), ("ls", "ln")):
        cs, cn, ps, pn = f"c.{s}", f"c.{n}", f"p.{s}", f"p.{n}"
        parts.append(
            f"CASE WHEN p.n IS NULL THEN (CASE WHEN {cn} > 0 THEN 0 END) "
            f"WHEN {cn} > 0 AND {pn} > 0 THEN {_change_mb(cs, cn, ps, pn)} END"
        )
        parts.append(
            f"CASE WHEN p.n IS NULL THEN (CASE WHEN {cn} > 0 THEN 0 END) "
            f"WHEN {cn} > 0 AND {pn} > 0 THEN {_hundredths_to_percent(_percent(cs, cn, ps, pn))} END"
        )
    parts += [size_pct, ":now, :now"]
    return ",\n    ".join(parts)


INST_CUR = """
    SELECT {window_cols} instance_id, COUNT(*) AS n,
           CAST(SUM(total_size_mb) AS BIGINT) AS ts, MAX(total_size_mb) AS tmx, MIN(total_size_mb) AS tmn,
           CAST(SUM(database_count) AS BIGINT) AS cs, MAX(database_count) AS cmx, MIN(database_count) AS cmn
    FROM instance_size_stats WHERE collected_date BETWEEN {lo} AND {hi} AND is_deleted = :false
    GROUP BY {group_cols} instance_id"""
INST_PREV = """
    SELECT instance_id, COUNT(*) AS n, CAST(SUM(total_size_mb) AS BIGINT) AS ts,
           CAST(SUM(database_count) AS BIGINT) AS cs
    FROM instance_size_stats WHERE collected_date BETWEEN :ps AND :pe AND is_deleted = :false
    GROUP BY instance_id"""
INST_COLUMNS = (
    "instance_id, period_type, period_start, period_end, total_size_mb, avg_size_mb, "
    "max_size_mb, min_size_mb, data_count, database_count, avg_database_count, "
    "max_database_count, min_database_count, total_size_change_mb, total_size_change_percent, "
    "database_count_change, database_count_change_percent, growth_rate, trend_direction, "
    "calculated_at, created_at"
)


def _inst_values(start: str, end: str) -> str:
    growth = f"(CASE WHEN p.n IS NULL THEN 0 ELSE {_percent('c.ts', 'c.n', 'p.ts', 'p.n')} END)"
    count_pct = _hundredths_to_percent(_percent("c.cs", "c.n", "p.cs", "p.n"))
    parts = [
        f"c.instance_id, :ptype, {start}, {end}",
        "c.ts / c.n, CASE WHEN c.cs = 0 THEN 0 ELSE c.ts / c.cs END, c.tmx, c.tmn, c.n",
        f"c.cs / c.n, {_hundredths_to_percent(_round_half_away('c.cs * 100', 'c.n'))}, c.cmx, c.cmn",
        f"CASE WHEN p.n IS NULL THEN 0 ELSE {_change_mb('c.ts', 'c.n', 'p.ts', 'p.n')} END",
        _hundredths_to_percent(growth),
        f"CASE WHEN p.n IS NULL THEN 0 ELSE {_change_mb('c.cs', 'c.n', 'p.cs', 'p.n')} END",
        f"CASE WHEN p.n IS NULL THEN 0 ELSE {count_pct} END",
        _hundredths_to_percent(growth),
        f"CASE WHEN {growth} > 500 THEN 'growing' WHEN {growth} < -500 THEN 'shrinking' ELSE 'stable' END",
        ":now, :now",
    ]
    return ",\n    ".join(parts)


def window_sql(level: str, table: str) -> str:
    """Floor for one window: cur GROUP BY LEFT JOIN prev GROUP BY. Binds :cs :ce :ps :pe :ptype :now."""
    if level == "database":
        cur = DB_CUR.format(window_cols="", group_cols="", lo=":cs", hi=":ce")
        return (
            f"INSERT INTO {table} ({DB_COLUMNS})\nSELECT {_db_values(':cs', ':ce')}\n"
            f"FROM ({cur}) AS c\nLEFT JOIN ({DB_PREV}) AS p\n"
            "ON p.instance_id = c.instance_id AND p.database_name = c.database_name"
        )
    cur = INST_CUR.format(window_cols="", group_cols="", lo=":cs", hi=":ce")
    return (
        f"INSERT INTO {table} ({INST_COLUMNS})\nSELECT {_inst_values(':cs', ':ce')}\n"
        f"FROM ({cur}) AS c\nLEFT JOIN ({INST_PREV}) AS p\nON p.instance_id = c.instance_id"
    )


def daily_range_sql(level: str, table: str, dialect: str) -> str:
    """Floor for a range of daily windows: one GROUP BY over :ps..:ce joined to itself a day later."""
    prev_day = "date(c.d, '-1 day')" if dialect == "sqlite" else "c.d - 1"
    window = {
        "window_cols": "collected_date AS d,",
        "group_cols": "collected_date,",
        "lo": ":ps",
        "hi": ":ce",
    }
    if level == "database":
        groups, columns, values = DB_CUR.format(**window), DB_COLUMNS, _db_values("c.d", "c.d")
        keys = "p.instance_id = c.instance_id AND p.database_name = c.database_name"
    else:
        groups, columns, values = INST_CUR.format(**window), INST_COLUMNS, _inst_values("c.d", "c.d")
        keys = "p.instance_id = c.instance_id"
    return (
        f"WITH g AS ({groups})\nINSERT INTO {table} ({columns})\nSELECT {values}\n"
        f"FROM g AS c LEFT JOIN g AS p ON p.d = {prev_day} AND {keys}\nWHERE c.d >= :cs"
    )


def binds(conn: sa.Connection, period: str, first: Window, last: Window, now: object) -> dict[str, object]:
    """Parameters of the floor statements; dates as the driver stores them on each engine."""

    def d(value: date) -> object:
        return value if conn.dialect.name == "postgresql" else value.isoformat()

    stamp = now if conn.dialect.name == "postgresql" else now.strftime("%Y-%m-%d %H:%M:%S.%f")  # type: ignore[attr-defined]
    return {
        "cs": d(first.start),
        "ce": d(last.end),
        "ps": d(first.previous().start),
        "pe": d(first.previous().end),
        "ptype": period,
        "now": stamp,
        "false": False,
    }


def run_floor(conn: sa.Connection, level: str, table: sa.Table, windows: list[Window], now: object) -> int:
    """Insert the floor's rows for `windows` (one window, or a range of daily windows)."""
    first, last = windows[0], windows[-1]
    if len(windows) == 1:
        sql = window_sql(level, table.name)
    elif first.period == "daily":
        sql = daily_range_sql(level, table.name, conn.dialect.name)
    else:
        raise ValueError("the floor covers one window or a range of daily windows")
    params = binds(conn, first.period.value, first, last, now)
    used = {k: v for k, v in params.items() if f":{k}" in sql}
    stmt = sa.text(sql)
    if conn.dialect.name == "postgresql":
        types = {k: sa.Date for k in ("cs", "ce", "ps", "pe")} | {"now": sa.DateTime(timezone=True)}
        stmt = stmt.bindparams(*(sa.bindparam(k, type_=t) for k, t in types.items() if k in used))
    return conn.execute(stmt, used).rowcount


def rows_differ(
    conn: sa.Connection, target: sa.Table, copy: sa.Table, period: str, first: date, last: date
) -> int:
    """Rows of the slice that are not identical in both tables (0 = equal sets), counted in the database."""
    columns = [c.name for c in target.columns if c.name not in NOT_COMPARED]
    slice_ = "period_type = :ptype AND period_start BETWEEN :lo AND :hi"
    params: dict[str, object] = {"ptype": period, "lo": first, "hi": last}
    if conn.dialect.name != "postgresql":
        params = {**params, "lo": first.isoformat(), "hi": last.isoformat()}
    cols = ", ".join(columns)
    counts = [
        conn.execute(sa.text(f"SELECT COUNT(*) FROM {t} WHERE {slice_}"), params).scalar_one()
        for t in (target.name, copy.name)
    ]
    # Both tables have a unique key on the slice, so equal counts and an empty
    # one-way difference mean equal sets.
    missing = conn.execute(
        sa.text(
            f"SELECT COUNT(*) FROM (SELECT {cols} FROM {copy.name} WHERE {slice_} "
            f"EXCEPT SELECT {cols} FROM {target.name} WHERE {slice_}) AS d"
        ),
        params,
    ).scalar_one()
    return abs(counts[0] - counts[1]) + missing
