"""The installed `sizeagg` command, run as a user runs it: a subprocess in a working directory."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from sizeagg_pipeline_tests.support.paths import BIN

SIZEAGG = str(BIN / "sizeagg")


def sizeagg(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`sizeagg *args` in `cwd`, with this environment (DAGSTER_HOME unset) updated by `env`."""
    environment = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"} | (env or {})
    return subprocess.run(
        [SIZEAGG, *args], cwd=cwd, env=environment, capture_output=True, text=True, timeout=600
    )
