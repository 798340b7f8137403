"""PostgreSQL views that read a column being retyped: saved, dropped and re-created as they were.

`ALTER TABLE … ALTER COLUMN … TYPE` fails on a column that a view reads ("cannot
alter type of a column used by a view or rule"): the origin's first schema has
`v_database_size_aggregations_recent` (`SELECT dsa.* …`) on the aggregate table
whose percent columns `sizeagg init-db --upgrade` widens (core/existing.py). The
only way through is to drop the view and create it again, and a dropped view takes
with it everything attached to it. So before the drop, each view that reads the
columns (of the table or of any of its partitions), and each view that reads such
a view, is saved as the statements that re-create it as it was:

* its definition (`pg_get_viewdef`), its column names and its options
  (`security_barrier`, `check_option`, …);
* its owner, its privileges and its column privileges (GRANTs), replayed from its ACL;
* the comments on the view and on its columns, column defaults, triggers (with their
  comments) and rules.

Everything runs in the caller's transaction, so a failure anywhere leaves every
view and column as it was. Materialized views are not re-created (that would mean
recomputing their data): one is reported, and the caller changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import sqlalchemy as sa

_IS_VIEW_RULE = (
    "d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass AND r.ev_class <> d.refobjid"
)
# Views whose rules read the named columns of the table or of one of its partitions.
_READERS_OF_COLUMNS = sa.text(
    f"""
    WITH RECURSIVE tree(relid) AS (
        SELECT CAST(:table AS regclass)
        UNION ALL SELECT i.inhrelid FROM pg_inherits i JOIN tree ON i.inhparent = tree.relid
    )
    SELECT DISTINCT r.ev_class FROM pg_depend d
    JOIN pg_rewrite r ON r.oid = d.objid
    JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
    WHERE {_IS_VIEW_RULE} AND d.refobjid IN (SELECT relid FROM tree) AND a.attname = ANY(:columns)
    """
)
# (view, relation it reads) for every view that reads one of the given relations.
_READERS_OF_RELATIONS = sa.text(
    f"""
    SELECT DISTINCT r.ev_class, d.refobjid FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
    WHERE {_IS_VIEW_RULE} AND d.refobjid = ANY(:oids)
    """
)
_VIEW = sa.text(
    """
    SELECT format('%I.%I', n.nspname, c.relname) AS name, c.relkind, pg_get_viewdef(c.oid) AS definition,
           c.reloptions, pg_get_userbyid(c.relowner) AS owner, c.relacl IS NOT NULL AS has_acl,
           obj_description(c.oid, 'pg_class') AS comment
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = :oid
    """
)
_COLUMNS = sa.text(
    "SELECT quote_ident(attname) FROM pg_attribute WHERE attrelid = :oid AND attnum > 0 "
    "AND NOT attisdropped ORDER BY attnum"
)
# Each (grantee, grant option) of an ACL with its privileges, in ACL order; 0 is PUBLIC.
_ACL = """
    SELECT {column} AS col,
           CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END,
           a.is_grantable, string_agg(a.privilege_type, ', ' ORDER BY a.n)
    FROM {source}, LATERAL (SELECT e.*, row_number() OVER () AS n FROM aclexplode({acl}) e) a
    WHERE {where}
    GROUP BY 1, a.grantee, a.is_grantable ORDER BY 1, min(a.n)
"""
_TABLE_ACL = sa.text(_ACL.format(column="''", source="pg_class c", acl="c.relacl", where="c.oid = :oid"))
_COLUMN_ACL = sa.text(
    _ACL.format(
        column="quote_ident(att.attname)",
        source="pg_attribute att",
        acl="att.attacl",
        where="att.attrelid = :oid AND att.attacl IS NOT NULL",
    )
)
# The rest of what hangs on a view, as the statements that re-create it (after the ACL).
_ATTACHED = sa.text(
    """
    SELECT format('COMMENT ON COLUMN %s.%I IS %L', :name, a.attname, col_description(a.attrelid, a.attnum))
    FROM pg_attribute a WHERE a.attrelid = :oid AND a.attnum > 0
    AND col_description(a.attrelid, a.attnum) IS NOT NULL
    UNION ALL
    SELECT format(
        'ALTER VIEW %s ALTER COLUMN %I SET DEFAULT %s', :name, a.attname, pg_get_expr(d.adbin, d.adrelid)
    )
    FROM pg_attrdef d JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
    WHERE d.adrelid = :oid
    UNION ALL
    SELECT pg_get_triggerdef(t.oid) FROM pg_trigger t WHERE t.tgrelid = :oid AND NOT t.tgisinternal
    UNION ALL
    SELECT format('COMMENT ON TRIGGER %I ON %s IS %L', t.tgname, :name, obj_description(t.oid, 'pg_trigger'))
    FROM pg_trigger t
    WHERE t.tgrelid = :oid AND NOT t.tgisinternal AND obj_description(t.oid, 'pg_trigger') IS NOT NULL
    UNION ALL
    SELECT pg_get_ruledef(r.oid) FROM pg_rewrite r WHERE r.ev_class = :oid AND r.rulename <> '_RETURN'
    """
)


class UnsupportedDependent(RuntimeError):
    """An object reads the column and is not a plain view sizeagg can re-create."""


@dataclass(frozen=True)
class SavedView:
    """A view, and the statements that create it again exactly as it was."""

    oid: int
    name: str  # schema-qualified, quoted
    statements: tuple[str, ...]


def views_reading(conn: sa.Connection, columns: Mapping[str, Sequence[str]]) -> list[SavedView]:
    """The views that must be dropped to retype `columns` (table → column names), in creation order.

    Those that read the columns (of the table or of its partitions), then, transitively,
    the views that read those.
    """
    readers: set[int] = set()
    for table, names in columns.items():
        readers |= set(conn.execute(_READERS_OF_COLUMNS, {"table": table, "columns": list(names)}).scalars())
    reads: dict[int, set[int]] = {oid: set() for oid in readers}
    frontier = set(readers)
    while frontier:
        edges = conn.execute(_READERS_OF_RELATIONS, {"oids": sorted(frontier)}).all()
        for view, read in edges:
            reads.setdefault(view, set()).add(read)
        frontier = {view for view, _ in edges} - frontier - set(readers)
        readers |= frontier
    ordered: list[int] = []
    while len(ordered) < len(reads):  # a view after every saved view it reads
        ready = sorted(v for v in reads if v not in ordered and reads[v] & reads.keys() <= set(ordered))
        if not ready:  # PostgreSQL allows no cycle of views; never loop on one
            raise UnsupportedDependent("views that read each other in a cycle read it")
        ordered += ready
    return [_save(conn, oid) for oid in ordered]


def _save(conn: sa.Connection, oid: int) -> SavedView:
    view = conn.execute(_VIEW, {"oid": oid}).mappings().one()
    name = view["name"]
    if view["relkind"] != "v":
        raise UnsupportedDependent(
            f"materialized view {name} reads it: drop it, run this again, then create it again"
        )
    columns = ", ".join(conn.execute(_COLUMNS, {"oid": oid}).scalars())
    options = f" WITH ({', '.join(view['reloptions'])})" if view["reloptions"] else ""
    definition = view["definition"].strip().rstrip(";")
    statements = [f"CREATE VIEW {name} ({columns}){options} AS {definition}"]
    owner = conn.execute(sa.text("SELECT current_user")).scalar_one()
    if view["owner"] != owner:
        statements.append(f"ALTER VIEW {name} OWNER TO {_quoted(conn, view['owner'])}")
    if view["has_acl"]:
        # A new view has the default ACL (its owner may do everything): start from none.
        statements.append(f"REVOKE ALL ON {name} FROM {_quoted(conn, view['owner'])}")
        for _, grantee, grantable, privileges in conn.execute(_TABLE_ACL, {"oid": oid}):
            option = " WITH GRANT OPTION" if grantable else ""
            statements.append(f"GRANT {privileges} ON {name} TO {grantee}{option}")
    for column, grantee, grantable, privileges in conn.execute(_COLUMN_ACL, {"oid": oid}):
        option = " WITH GRANT OPTION" if grantable else ""
        each = ", ".join(f"{p} ({column})" for p in privileges.split(", "))
        statements.append(f"GRANT {each} ON {name} TO {grantee}{option}")
    if view["comment"] is not None:
        literal = conn.execute(sa.text("SELECT quote_literal(:c)"), {"c": view["comment"]}).scalar_one()
        statements.append(f"COMMENT ON VIEW {name} IS {literal}")
    statements += conn.execute(_ATTACHED, {"oid": oid, "name": name}).scalars()
    return SavedView(oid=oid, name=name, statements=tuple(statements))


def _quoted(conn: sa.Connection, role: str) -> str:
    return str(conn.execute(sa.text("SELECT quote_ident(:r)"), {"r": role}).scalar_one())


def drop(conn: sa.Connection, views: Sequence[SavedView]) -> None:
    """Drop the views in one statement (RESTRICT: anything else that reads them stops it)."""
    if views:
        conn.exec_driver_sql(f"DROP VIEW {', '.join(v.name for v in views)}")


def recreate(conn: sa.Connection, views: Sequence[SavedView]) -> None:
    """Run the saved statements, in order (without parameters: a `%` in them is literal)."""
    for view in views:
        for statement in view.statements:
            conn.exec_driver_sql(statement, execution_options={"no_parameters": True})
