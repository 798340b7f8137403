"""`sizeagg init-db` on a database that may already hold the origin platform's tables.

It adds only what is missing and says what it found:

* tables sizeagg needs and that do not exist are created (`schema.create_missing`);
* an existing table is never altered or rewritten; for each one the report names its
  partitioning (PostgreSQL), the unique key sizeagg's upserts will use, and columns
  whose type differs from what sizeagg would create (an origin `int4` where sizeagg
  creates `bigint` is fine; a `numeric(5,2)` percent column or a missing column is
  a problem, reported as such);
* the one thing added to an existing table is the unique key of an aggregate table
  that lacks it (the origin's first DDL did): without it `INSERT … ON CONFLICT`
  cannot work. It gets the origin's name and column order;
* sessions written before `sizeagg_executions` existed are linked to their
  executions there, once (`sessions.link_existing_sessions`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa

from . import schema, sessions
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
PERCENT_PRECISION = 10


@dataclass
class InitDbReport:
    """What init-db found, created and added; `problems` make it exit non-zero."""

    found: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    details: dict[str, list[str]] = field(default_factory=dict)
    added: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = []
        for name in self.found:
            lines.append(f"found   {name}")
            lines += [f"          {line}" for line in self.details.get(name, [])]
        lines += [f"added   {what}" for what in self.added]
        lines += [f"created {name}" for name in self.created]
        lines += [f"PROBLEM {what}" for what in self.problems]
        return "\n".join(lines)


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
    try:
        return type_.compile(dialect=dialect)
    except sa.exc.CompileError:
        return repr(type_)


def _column_findings(inspector: sa.Inspector, table: sa.Table, dialect: sa.Dialect) -> tuple[list, list]:
    notes, problems = [], []
    existing = {c["name"]: c for c in inspector.get_columns(table.name)}
    for column in table.columns:
        found = existing.get(column.name)
        if found is None:
            problems.append(f"{table.name}.{column.name} is missing (sizeagg reads or writes it)")
            continue
        ours, theirs = column.type, found["type"]
        if isinstance(ours, sa.Numeric) and not isinstance(ours, sa.Float):
            precision = getattr(theirs, "precision", None)
            if precision is not None and precision < PERCENT_PRECISION:
                problems.append(
                    f"{table.name}.{column.name} is {_type_text(theirs, dialect)}: percentages beyond "
                    f"±{10 ** (precision - 2) - 0.01:.2f} fail with a numeric overflow; widen it with "
                    f"ALTER TABLE {table.name} ALTER COLUMN {column.name} TYPE numeric(10,2)"
                )
                continue
        if isinstance(ours, sa.DateTime) and ours.timezone and not getattr(theirs, "timezone", True):
            notes.append(
                f"{column.name} is timestamp without time zone: sizeagg writes UTC instants, which "
                "PostgreSQL stores as wall-clock time of the session's TimeZone setting"
            )
            continue
        ours_text, theirs_text = _type_text(ours, dialect), _type_text(theirs, dialect)
        if ours_text != theirs_text:
            notes.append(f"{column.name} is {theirs_text} (sizeagg creates {ours_text})")
    return notes, problems


def init_db(engine: sa.Engine) -> InitDbReport:
    """Create what is missing, add a missing aggregate upsert key, report the rest."""
    report = InitDbReport()
    dialect = engine.dialect
    with engine.begin() as conn:
        # One connection for everything: on SQLite a second one would wait for the
        # write lock this transaction holds (BEGIN IMMEDIATE).
        inspector = sa.inspect(conn)
        existing = set(inspector.get_table_names())
        for table in schema.metadata.sorted_tables:
            if table.name not in existing:
                continue
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
                            f"({str(exc.orig).strip().splitlines()[0]}); remove the duplicate rows first"
                        )
                else:
                    details.append(f"no unique key on ({', '.join(wanted)}): `demo-data` cannot upsert here")
            notes, problems = _column_findings(inspector, table, dialect)
            if dialect.name == "postgresql":  # SQLite's reflected types say little (no time zones)
                details += notes
            report.problems += problems
    created = schema.create_missing(engine)
    report.created = created.created
    with engine.begin() as conn:
        linked = sessions.link_existing_sessions(conn)
    if linked:
        report.added.append(f"links of {linked} existing sessions to their executions in sizeagg_executions")
    return report
