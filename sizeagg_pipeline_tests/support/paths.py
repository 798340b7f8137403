"""Where the repository and this virtualenv's executables are, from any test folder."""

from __future__ import annotations

import sys
from pathlib import Path

# support/ → sizeagg_pipeline_tests/ → the repository (workspace.yaml, dagster.yaml, deploy/, benchmarks/)
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # dagster, dagster-webserver, dagster-daemon, sizeagg
