"""Table schemas and column lineage for the UI, derived from `core/schema.py` and `core/lineage.py`.

Column names, types and nullability come from the SQLAlchemy tables, so the schema
is written down once; where each column comes from is the level's (or the
forecast's) lineage map.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import dagster as dg
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from ...core import schema
from ...core.levels import Level
from ...core.lineage import SESSION_DESCRIPTIONS, Lineage, column_descriptions
from ...dagster_private import Metadata

# source name in a Lineage -> the upstream (asset, column) pairs it stands for
Sources = Mapping[str, Sequence[tuple[dg.AssetKey, str]]]


def _type_name(column: sa.Column) -> str:
    # The origin's DDL is PostgreSQL: show its type names on every backend.
    return column.type.compile(dialect=postgresql.dialect()).lower()


def table_schema(table: sa.Table, descriptions: Mapping[str, str] | None = None) -> dg.TableSchema:
    """The Dagster table schema of a SQLAlchemy table."""
    descriptions = descriptions or {}
    unique = {
        next(iter(c.columns)).name
        for c in table.constraints
        if isinstance(c, sa.schema.ColumnCollectionConstraint) and len(c.columns) == 1
    } - {"id"}
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=column.name,
                type=_type_name(column),
                description=descriptions.get(column.name),
                constraints=dg.TableColumnConstraints(
                    nullable=bool(column.nullable) and not column.primary_key,
                    unique=column.primary_key or column.name in unique,
                ),
            )
            for column in table.columns
        ]
    )


def column_lineage(lineage: Lineage, sources: Sources) -> dg.TableColumnLineage:
    """`dagster/column_lineage`: each column's upstream (asset, column) pairs."""
    deps: dict[str, list[dg.TableColumnDep]] = {}
    for name, (columns, _) in lineage.items():
        pairs = [
            dg.TableColumnDep(asset_key=key, column_name=column)
            for source in columns
            for key, column in sources.get(source, ())
        ]
        if pairs:
            deps[name] = pairs
    return dg.TableColumnLineage(deps_by_column=deps)


def raw_metadata(table: sa.Table) -> Metadata:
    return {"dagster/table_name": table.name, "dagster/column_schema": table_schema(table)}


def aggregate_lineage(level: Level) -> dg.TableColumnLineage:
    """Column lineage of a level's aggregate table from its raw table's asset (same name)."""
    key = dg.AssetKey(level.raw.name)
    return column_lineage(level.lineage, {c.name: [(key, c.name)] for c in level.raw.columns})


def aggregate_metadata(level: Level) -> Metadata:
    """Definition metadata of an aggregate asset: schema with formulas, and column lineage."""
    return {
        "dagster/table_name": level.target.name,
        "dagster/column_schema": table_schema(
            level.target, column_descriptions(level.lineage, level.raw.name)
        ),
        "dagster/column_lineage": aggregate_lineage(level),
    }


def session_metadata() -> Metadata:
    return {
        "dagster/table_name": schema.sync_sessions.name,
        "dagster/column_schema": table_schema(schema.sync_sessions, SESSION_DESCRIPTIONS),
        "records_table": schema.sync_instance_records.name,
    }
