"""benchmarks/aggregation_bench.py (`--quick`): its report is complete and the floor's rows are sizeagg's.

Only completeness and equality are checked here, not the ratios: at CI size the
fixed costs of a write dominate, and timings on a shared machine are not a test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from sizeagg_pipeline_tests.support.backends import BACKENDS
from sizeagg_pipeline_tests.support.paths import ROOT

BENCH = ROOT / "benchmarks" / "aggregation_bench.py"


@pytest.mark.parametrize("backend", BACKENDS)
def test_quick_benchmark_report_is_complete(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    output = tmp_path / "results.md"
    engine_args = (
        ["--workdir", str(tmp_path)]
        if backend == "sqlite"
        else ["--no-sqlite", "--postgres", request.getfixturevalue("postgresql_url")]
    )
    run = subprocess.run(
        [sys.executable, str(BENCH), "--quick", *engine_args, "--output", str(output)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report = output.read_text()
    data = json.loads(output.with_suffix(".json").read_text())
    (result,) = data["engines"]

    windows = {(w["window"], w["level"]): w for w in result["windows"]}
    assert len(windows) == 10  # daily, weekly, monthly, quarterly, one-year range × 2 levels
    for (name, level), w in windows.items():
        assert w["rows_equal"] is True, (name, level)  # the floor's rows are sizeagg's
        assert w["rows"] > 0 and w["sizeagg"]["wall"] > 0 and w["floor"]["wall"] > 0, (name, level)
        assert w["origin_orm_per_row"] and w["origin_core_per_row"], (name, level)
    assert {name.split()[0] for name, _ in windows} == {"daily", "weekly", "monthly", "quarterly"}
    assert any("×365" in name for name, _ in windows)
    assert set(result["memory"]) >= {"quarterly 1y", "quarterly 3y", "range 1y", "range 3y"}
    assert all(m["peak_mb"] > 0 and m["rows"] >= 0 for m in result["memory"].values())
    assert set(result["ticks"]) == {"1y", "3y"} and set(result["steady"]) == {"empty", "stored", "rerun"}
    assert result["data"]["history_rows"]["database_size_stats"] > result["data"]["database_size_stats"]
    if backend == "sqlite":
        assert not list(tmp_path.glob("*.db*")), (
            "the benchmark's files (and the 3-year database's) are removed"
        )
    else:
        with sa.create_engine(
            request.getfixturevalue("postgresql_url"), poolclass=sa.NullPool
        ).connect() as conn:
            left = conn.execute(
                sa.text("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'sizeagg%'")
            ).all()
        assert left == [], "the benchmark's schemas (and the 3-year database's) are dropped"

    targets = result["targets"]
    assert len(targets) == 5 + 5 + 1 + 2 + 1
    assert all(cell[0] != "—" for cell in targets.values())  # every ratio was measured
    assert report.startswith("# Aggregation benchmark") and "--quick" in report
    assert "NO |" not in report and report.count("| yes |") == 15  # 5 windows × (2 levels + both)
    assert "collected_date" in report  # the query plans are quoted
