"""benchmarks/bookkeeping_bench.py (`--quick`): its report is complete, and it keeps what results.md held.

Only completeness is checked here, not the timings: on a shared machine timings are
not a test.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import sqlalchemy as sa

from sizeagg_pipeline_tests.support.backends import BACKENDS
from sizeagg_pipeline_tests.support.paths import ROOT

BENCH = ROOT / "benchmarks" / "bookkeeping_bench.py"
MEASUREMENTS = 4 + 5 + 1  # lookups, sensor evaluations, `sizeagg run`


def _bench_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bookkeeping_bench", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("backend", BACKENDS)
def test_quick_benchmark_report_is_complete(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    output = tmp_path / "results.md"
    output.write_text("# Aggregation benchmark\n\nthe aggregation results\n")
    engine_args = (
        ["--workdir", str(tmp_path)]
        if backend == "sqlite"
        else ["--no-sqlite", "--postgres", request.getfixturevalue("postgresql_url")]
    )
    run = subprocess.run(
        [sys.executable, str(BENCH), "--quick", *engine_args, "--output", str(output)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report = output.read_text()
    assert report.startswith("# Aggregation benchmark\n\nthe aggregation results\n")
    assert report.count("# Bookkeeping benchmark") == 1
    # The next run replaces its section rather than adding one (one run of the whole
    # benchmark per engine keeps the suite short; the writing is the same code).
    bench = _bench_module()
    section = bench.BOOKKEEPING_MARKER + report.split(bench.BOOKKEEPING_MARKER, 1)[1]
    bench.write_section(output, section + "the next run\n")
    again = output.read_text()
    assert again.startswith("# Aggregation benchmark\n\nthe aggregation results\n")
    assert again.count("# Bookkeeping benchmark") == 1 and again.endswith("the next run\n")
    (result,) = json.loads((tmp_path / "bookkeeping.json").read_text())["engines"]
    rows = result["rows"]
    assert len(rows) == MEASUREMENTS
    assert {r["kind"] for r in rows} == {"lookup", "sensor", "run"}
    for row in rows:  # measured with and without history, and as before issue 18
        assert row["empty"] > 0 and row["history"] > 0, row
        assert row["before_empty"] > 0 and row["before_history"] > 0, row
        assert f"| {row['name']} |" in report
    assert result["data"]["sync_instance_records_rows"] == 20 * 1100  # 1,100 sessions × 20 instances
    assert result["data"]["sizeagg_executions_rows"] == 1100  # every old session linked, as init-db does
    if backend == "sqlite":
        assert not list(tmp_path.glob("*.db*")), "the benchmark's files are removed"
    else:
        with sa.create_engine(
            request.getfixturevalue("postgresql_url"), poolclass=sa.NullPool
        ).connect() as conn:
            left = conn.execute(
                sa.text("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'sizeagg%'")
            ).all()
        assert left == [], "the benchmark's schemas are dropped"
