"""`sizeagg init-db` on a database that may already hold the origin platform's tables.

It adds only what is missing and says what it found:

* tables sizeagg needs and that do not exist are created (`schema.create_missing`);
* for each existing table the report names its partitioning (PostgreSQL), the unique
  key sizeagg's upserts will use, and columns whose type differs from what sizeagg
  would create (an origin `int4` where sizeagg creates `bigint` is fine; a missing
  column is a problem, reported as such);
* the one thing added to an existing table is the unique key of an aggregate table
  that lacks it (the origin's first DDL did): without it `INSERT … ON CONFLICT`
  cannot work. It gets the origin's name and column order;
* a `numeric(5,2)` percent column (the origin's first DDL) overflows at 1000 %: it is
  a problem, which `init-db --upgrade` fixes by widening it to numeric(10,2), after
  saving the views that read it and before re-creating them as they were
  (core/pg_views.py). Widening a numeric's precision at the same scale rewrites no row.

* sessions written before `sizeagg_executions` existed are linked to their
  executions there, once (`sessions.link_existing_sessions`).

All of it is one transaction, rolled back when there is any problem: a report with
a PROBLEM line has changed nothing (PostgreSQL and SQLite DDL are transactional).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa

from . import pg_views, schema, sessions
from .pg_partitions import partitioning

# Origin names and column order (docs/postgres.md) of the keys sizeagg upserts on.
ORIGIN_UPSERT_KEYS: dict[str, tuple[str, tuple[str, ...]]] = {
    "database_size_aggregations": (
        "uq_database_size_aggregation",
        ("instance_id", "database_name", "period_type", "period_start"),
    ),
    "instance_size_aggregations": (
        "uq_instance_size_aggregation",
        ("instance_id", "period_type", "period_start"),
    ),
}
# The key the collector (and `demo-data`) upserts raw rows on; reported, never added.
RAW_KEYS: dict[str, tuple[str, ...]] = {
    "database_size_stats": ("instance_id", "database_name", "collected_date"),
    "instance_size_stats": ("instance_id", "collected_date"),
}
PARTITION_COLUMNS = {
    "database_size_stats": "collected_date",
    "instance_size_stats": "collected_date",
    "database_size_aggregations": "period_start",
    "instance_size_aggregations": "period_start",
}
PERCENT_PRECISION, PERCENT_SCALE = 10, 2
# PostgreSQL's default fractional-second precision: TIMESTAMP(6) is TIMESTAMP.
DEFAULT_TIMESTAMP_PRECISION = 6


@dataclass(frozen=True)
class NarrowColumn:
    """A percent column narrower than numeric(10,2)."""

    table: str
    column: str
    type_text: str
    precision: int

    def __str__(self) -> str:
        return f"{self.table}.{self.column}"


@dataclass
class InitDbReport:
    """What init-db found, created, added and widened; `problems` mean it changed nothing."""

    found: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    details: dict[str, list[str]] = field(default_factory=dict)
    added: list[str] = field(default_factory=list)
    widened: list[str] = field(default_factory=list)
    rebuilt: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    narrow: list[NarrowColumn] = field(default_factory=list)  # left as they are (no --upgrade)

    def __str__(self) -> str:
        lines = []
        for name in self.found:
            lines.append(f"found   {name}")
            lines += [f"          {line}" for line in self.details.get(name, [])]
        undone = "rolled back: " if self.problems else ""  # a problem rolls everything back
        lines += [f"{undone}added   {what}" for what in self.added]
        lines += [f"{undone}widened {what}" for what in self.widened]
        lines += [f"{undone}rebuilt {what}" for what in self.rebuilt]
        lines += [f"{undone}created {name}" for name in self.created]
        lines += [f"PROBLEM {what}" for what in self.problems]
        return "\n".join(lines)

    def verdict(self) -> str:
        """One line: that nothing changed, and what to do."""
        count = f"{len(self.problems)} PROBLEM line(s) above, nothing was changed"
        if len(self.narrow) == len(self.problems):
            return f"{count}: run `sizeagg init-db --upgrade` to widen the percent columns"
        return f"{count}: fix them, then run `sizeagg init-db` again"


def _unique_keys(inspector: sa.Inspector, table: str) -> list[tuple[str, list[str], str | None]]:
    """(name, columns, partial-index predicate) of every unique constraint and index."""
    constraints = inspector.get_unique_constraints(table)
    keys: list[tuple[str, list[str], str | None]] = [
        (u["name"] or "?", list(u["column_names"]), None) for u in constraints
    ]
    for index in inspector.get_indexes(table):
        columns = [c for c in index["column_names"] if c is not None]
        expression = len(columns) < len(index["column_names"])
        if index["unique"] and not expression and index["name"] not in {k[0] for k in keys}:
            where = index.get("dialect_options", {}).get("postgresql_where")
            keys.append((index["name"] or "?", columns, where))
    return keys


def _type_text(type_: sa.types.TypeEngine, dialect: sa.Dialect) -> str:
    if isinstance(type_, sa.DateTime) and getattr(type_, "precision", None) == DEFAULT_TIMESTAMP_PRECISION:
        type_ = sa.DateTime(timezone=type_.timezone)
    try:
        return type_.compile(dialect=dialect)
    except sa.exc.CompileError:
        return repr(type_)


def _column_findings(
    inspector: sa.Inspector, table: sa.Table, dialect: sa.Dialect
) -> tuple[list[str], list[str], list[NarrowColumn]]:
    """Notes on types that differ, problems, and percent columns too narrow to hold sizeagg's values."""
    notes, problems, narrow = [], [], []
    existing = {c["name"]: c for c in inspector.get_columns(table.name)}
    for column in table.columns:
        found = existing.get(column.name)
        if found is None:
            problems.append(f"{table.name}.{column.name} is missing (sizeagg reads or writes it)")
            continue
        ours, theirs = column.type, found["type"]
        theirs_text = _type_text(theirs, dialect)
        precision = getattr(theirs, "precision", None)
        is_decimal = isinstance(ours, sa.Numeric) and not isinstance(ours, sa.Float)
        # SQLite stores any number in a NUMERIC(5,2) column: only PostgreSQL overflows.
        if is_decimal and dialect.name == "postgresql" and precision and precision < PERCENT_PRECISION:
            if getattr(theirs, "scale", None) == PERCENT_SCALE:
                narrow.append(NarrowColumn(table.name, column.name, theirs_text, precision))
            else:
                problems.append(
                    f"{table.name}.{column.name} is {theirs_text}: sizeagg writes numeric(10,2) values; "
                    "retype it by hand"
                )
            continue
        if isinstance(ours, sa.DateTime) and ours.timezone and not getattr(theirs, "timezone", True):
            notes.append(
                f"{column.name} is timestamp without time zone: sizeagg writes UTC instants, which "
                "PostgreSQL stores as wall-clock time of the session's TimeZone setting"
            )
            continue
        ours_text = _type_text(ours, dialect)
        if ours_text != theirs_text:
            notes.append(f"{column.name} is {theirs_text} (sizeagg creates {ours_text})")
    return notes, problems, narrow


def _describe_table(
    conn: sa.Connection, inspector: sa.Inspector, table: sa.Table, report: InitDbReport
) -> None:
    """Report on one existing table; add the upsert key an aggregate table lacks."""
    dialect = conn.dialect
    report.found.append(table.name)
    details = report.details.setdefault(table.name, [])
    if dialect.name == "postgresql":
        layout = partitioning(conn, table.name)
        if layout is not None:
            managed = layout.managed_on(PARTITION_COLUMNS.get(table.name, ""))
            suffix = (
                "; sizeagg makes missing month partitions before it writes"
                if managed and table.name in ORIGIN_UPSERT_KEYS
                else ""
            )
            details.append(layout.describe() + suffix)
    keys = _unique_keys(inspector, table.name)
    wanted = ORIGIN_UPSERT_KEYS.get(table.name, (None, RAW_KEYS.get(table.name)))[1]
    if wanted is not None:
        match = [k for k in keys if set(k[1]) == set(wanted)]
        if match:
            name, columns, where = match[0]
            partial = f" WHERE {where}" if where else ""
            details.append(f"upsert key {name} ({', '.join(columns)}){partial}")
        elif table.name in ORIGIN_UPSERT_KEYS:
            name = ORIGIN_UPSERT_KEYS[table.name][0]
            listed = ", ".join(wanted)
            try:
                with conn.begin_nested():
                    conn.exec_driver_sql(f"CREATE UNIQUE INDEX {name} ON {table.name} ({listed})")
                report.added.append(f"unique index {name} on {table.name} ({listed})")
            except sa.exc.DBAPIError as exc:
                report.problems.append(
                    f"{table.name} has no unique key on ({listed}) and adding {name} failed "
                    f"({_first_line(exc)}); remove the duplicate rows first"
                )
        else:
            details.append(f"no unique key on ({', '.join(wanted)}): `demo-data` cannot upsert here")
    notes, problems, narrow = _column_findings(inspector, table, dialect)
    if dialect.name == "postgresql":  # SQLite's reflected types say little (no time zones)
        details += notes
    report.problems += problems
    report.narrow += narrow


def _first_line(exc: sa.exc.DBAPIError) -> str:
    return str(exc.orig).strip().splitlines()[0]


def _widen(conn: sa.Connection, report: InitDbReport, upgrade: bool) -> None:
    """Widen the narrow percent columns (with `upgrade`), or report each as a problem."""
    by_table: dict[str, list[str]] = {}
    for narrow in report.narrow:
        by_table.setdefault(narrow.table, []).append(narrow.column)
    try:
        views = pg_views.views_reading(conn, by_table)
    except pg_views.UnsupportedDependent as exc:
        report.problems.append(f"{', '.join(map(str, report.narrow))} cannot be widened: {exc}")
        return
    if not upgrade:
        rebuilt = f", re-creating the view(s) {', '.join(v.name for v in views)}" if views else ""
        report.problems += [
            f"{n} is {n.type_text}: percentages beyond ±{10 ** (n.precision - PERCENT_SCALE) - 0.01:.2f} "
            f"fail with a numeric overflow; `sizeagg init-db --upgrade` widens it to "
            f"numeric({PERCENT_PRECISION},{PERCENT_SCALE}){rebuilt}"
            for n in report.narrow
        ]
        return
    target = f"numeric({PERCENT_PRECISION},{PERCENT_SCALE})"
    try:
        with conn.begin_nested():
            pg_views.drop(conn, views)
            for table, columns in by_table.items():
                changes = ", ".join(f"ALTER COLUMN {column} TYPE {target}" for column in columns)
                conn.exec_driver_sql(f"ALTER TABLE {table} {changes}")
            pg_views.recreate(conn, views)
    except sa.exc.DBAPIError as exc:
        report.problems.append(f"widening {', '.join(map(str, report.narrow))} failed: {_first_line(exc)}")
        return
    report.widened += [f"{n} from {n.type_text} to {target}" for n in report.narrow]
    report.rebuilt += [
        f"view {v.name}: dropped and re-created with its definition, owner, privileges and comments"
        for v in views
    ]
    report.narrow = []


def init_db(engine: sa.Engine, *, upgrade: bool = False) -> InitDbReport:
    """Create what is missing, add a missing aggregate upsert key, report the rest; with
    `upgrade`, widen narrow percent columns. One transaction, rolled back on any problem."""
    report = InitDbReport()
    # One connection for everything: on SQLite a second one would wait for the
    # write lock this transaction holds (BEGIN IMMEDIATE).
    with engine.connect() as conn, conn.begin() as transaction:
        inspector = sa.inspect(conn)
        existing = set(inspector.get_table_names())
        for table in schema.metadata.sorted_tables:
            if table.name in existing:
                _describe_table(conn, inspector, table, report)
        if report.narrow:
            _widen(conn, report, upgrade)
        report.created = schema.create_missing(conn).created
        linked = sessions.link_existing_sessions(conn)
        if linked:
            report.added.append(
                f"links of {linked} existing sessions to their executions in sizeagg_executions"
            )
        if report.problems:
            transaction.rollback()
    return report
