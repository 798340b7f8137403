"""The data set every session test runs on."""

import pytest
import sqlalchemy as sa

from sizeagg_pipeline_tests.support.data import three_active_one_inactive


@pytest.fixture
def data(engine: sa.Engine) -> sa.Engine:
    """Instances 1-3 active, 4 inactive; two databases each, every day since 2026-02-20."""
    return three_active_one_inactive(engine)
