"""core/limits.py: capacity limits from a CSV file or one at a time; a bad file changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from sizeagg_pipeline.core import limits
from sizeagg_pipeline.core.limits import Limit
from sizeagg_pipeline_tests.support.data import add_instances

NOW = datetime(2026, 3, 18, tzinfo=UTC)


@pytest.fixture
def two_instances(engine: sa.Engine) -> sa.Engine:
    with engine.begin() as conn:
        add_instances(conn, 2)
    return engine


def _csv(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "limits.csv"
    path.write_text(text)
    return path


def test_import_then_replace(two_instances: sa.Engine, tmp_path: Path) -> None:
    path = _csv(
        tmp_path,
        "instance,database,limit_mb,note\n"
        "i1,,512000,data volume\ni1,orders,102400,\ni2,db0,2_048,tiny disk\n",
    )
    with two_instances.begin() as conn:
        assert limits.save(conn, limits.read_csv(path), NOW, str(path)) == 3
    with two_instances.begin() as conn:  # the same key again replaces the limit
        limits.save(conn, [Limit("i1", "orders", 204800, "grown")], NOW)
    with two_instances.connect() as conn:
        assert limits.listing(conn) == [
            Limit("i1", None, 512000, "data volume"),
            Limit("i1", "orders", 204800, "grown"),
            Limit("i2", "db0", 2048, "tiny disk"),
        ]
        by_series = limits.read(conn)
    assert by_series == {(1, None): 512000, (1, "orders"): 204800, (2, "db0"): 2048}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "instance,limit_mb\ni1,5\n",
            "line 1: the header needs the columns instance, database, limit_mb, note (missing: database)",
        ),
        (
            "instance,database,limit_mb,size\n",
            "line 1: unknown column 'size' (columns: instance, database, limit_mb, note)",
        ),
        (
            "instance,database,limit_mb\ni1,,100\ni2,db0,lots\n",
            "line 3: limit_mb 'lots' is not a whole number of MB",
        ),
        ("instance,database,limit_mb\ni1,,0\n", "line 2: limit_mb 0 must be above 0"),
        ("instance,database,limit_mb\n,db0,10\n", "line 2: the instance is empty"),
        ("instance,database,limit_mb\ni1,a,1\ni1,a,2\n", "line 3: i1/a is already on line 2"),
        ("instance,database,limit_mb\ni1,a,1,extra\n", "line 2: more fields than the header has"),
    ],
)
def test_a_bad_file_names_the_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    path = _csv(tmp_path, text)
    with pytest.raises(ValueError) as error:
        limits.read_csv(path)
    assert str(error.value) == f"{path} {message}"


def test_an_unknown_instance_writes_nothing(two_instances: sa.Engine, tmp_path: Path) -> None:
    path = _csv(tmp_path, "instance,database,limit_mb\ni1,,100\n\ni9,db0,10\n")
    unknown = rf"{path} line 4: no instance named 'i9' in instances"
    with pytest.raises(ValueError, match=unknown), two_instances.begin() as conn:
        limits.save(conn, limits.read_csv(path), NOW, str(path))
    with two_instances.connect() as conn:
        assert limits.listing(conn) == []
