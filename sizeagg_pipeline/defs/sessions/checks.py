"""Asset checks of `aggregation_session`: are the sessions honest?"""

from datetime import UTC, datetime, timedelta

import dagster as dg
from pydantic import Field

from ...core import quality
from ..aggregates.checks import check_result
from ..resources import AppDatabase
from .asset import aggregation_session

DEFAULT_MAX_RUNTIME_SECONDS = 7200  # dagster.yaml's run_monitoring.max_runtime_seconds


@dg.asset_check(
    asset=aggregation_session,
    description=(
        "Each finished session among the newest 100 (every session is checked while it is "
        "among them; the cost stays flat with history): successful_instances + "
        "failed_instances = total_instances = its sync_instance_records, the counters match "
        "the records' statuses, and no record is still pending or running."
    ),
)
def counts_add_up(db: AppDatabase) -> dg.AssetCheckResult:
    with db.engine.connect() as conn:
        return check_result(quality.session_counts_add_up(conn))


class RuntimeCheckConfig(dg.Config):
    max_runtime_seconds: int = Field(
        default=0,
        description=(
            "A session running longer than this is stuck. 0: the Dagster instance's "
            f"run_monitoring.max_runtime_seconds, or {DEFAULT_MAX_RUNTIME_SECONDS} when that is unset."
        ),
    )


@dg.asset_check(
    asset=aggregation_session,
    description="No session is still `running` longer than the maximum run time of an execution.",
)
def no_session_running_too_long(
    context: dg.AssetCheckExecutionContext, db: AppDatabase, config: RuntimeCheckConfig
) -> dg.AssetCheckResult:
    limit = (
        config.max_runtime_seconds
        or context.instance.run_monitoring_max_runtime_seconds
        or DEFAULT_MAX_RUNTIME_SECONDS
    )
    cutoff = datetime.now(UTC) - timedelta(seconds=limit)
    with db.engine.connect() as conn:
        return check_result(quality.sessions_running_too_long(conn, cutoff, limit), max_runtime_seconds=limit)


SESSION_CHECKS = [counts_add_up, no_session_running_too_long]
