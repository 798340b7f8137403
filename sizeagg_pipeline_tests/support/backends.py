"""The application-database backends: every test that asks for `app_url` runs once per backend."""

from __future__ import annotations

import pytest

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
