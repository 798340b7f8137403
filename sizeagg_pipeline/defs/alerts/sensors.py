"""The daemon's alerts: failed sessions and checks, missed deadlines, failed runs; and delivery.

`alerts` reads, on every tick, the sessions that ended failed or cancelled in the
last two days and the failed evaluations of asset checks since its cursor; it
records each new alert in `capacity_alerts` (one per key: kind, subject, business
day) and then sends every alert that is due, its own and those a failed delivery
left for later. `run_failure_alerts` is Dagster's run-failure sensor over every job
of the code location, for the runs no session reports (forecast, checks jobs).
Neither ever raises for a channel's failure: an alert that could not be delivered
stays in the table, retried and then `failed`.
"""

import json
from collections import defaultdict
from datetime import datetime, timedelta

import dagster as dg
import sqlalchemy as sa

from ...core import alerts, notify
from ...core.alerts import Kind
from ...core.periods import key_range
from ...core.settings import Alerting, alerting, operations, utc_now
from ...dagster_private import AssetCheckExecutionRecordStatus
from .. import automation
from ..resources import AppDatabase
from ..sessions.vocabulary import PARTITION_TAG, RANGE_END_TAG, RANGE_START_TAG
from .freshness import FRESHNESS_CHECK
from .messages import FailedCheck, business_day, check_alert, reported_by_a_session, run_alert, session_alert

LOOKBACK = timedelta(days=2)  # sessions and check failures a fresh cursor still looks at
HISTORY_PER_CHECK = 25  # failed evaluations read per check and tick


def _metadata_text(metadata: dict[str, dg.MetadataValue]) -> str:
    simple = {
        k: v.value
        for k, v in metadata.items()
        if not k.startswith("dagster/") and isinstance(v.value, str | int | float) and len(str(v.value)) < 80
    }
    return ", ".join(f"{k}={v}" for k, v in simple.items())


CheckDescriptions = dict[dg.AssetCheckKey, str]


def check_descriptions(repository: dg.RepositoryDefinition | None) -> CheckDescriptions:
    """Every asset check of the code location, with the description of its spec."""
    if repository is None:
        return {}
    graph = repository.asset_graph
    return {key: graph.get_check_spec(key).description or "" for key in graph.asset_check_keys}


def _partitions_of(instance: dg.DagsterInstance, run_id: str) -> str | None:
    """The partition (or range) of a run, when the check's record does not name one."""
    run = instance.get_run_by_id(run_id)
    if run is None:
        return None
    first = run.tags.get(RANGE_START_TAG) or run.tags.get(PARTITION_TAG)
    last = run.tags.get(RANGE_END_TAG) or first
    return key_range(first, last) if first and last else None


def failed_checks(
    instance: dg.DagsterInstance, checks: CheckDescriptions, after: int | None, now: datetime
) -> tuple[list[FailedCheck], int | None]:
    """Failed evaluations (ERROR severity, or a freshness check) since `after`; the new cursor."""
    since = (now - LOOKBACK).timestamp()
    found, newest = [], after
    for key in sorted(checks, key=lambda k: k.to_user_string()):
        records = instance.event_log_storage.get_asset_check_execution_history(
            key, limit=HISTORY_PER_CHECK, status={AssetCheckExecutionRecordStatus.FAILED}
        )
        for record in records:
            if (after is not None and record.id <= after) or (
                after is None and record.create_timestamp < since
            ):
                continue
            newest = max(newest or 0, record.id)
            event = record.event.dagster_event if record.event else None
            evaluation = event.event_specific_data if event else None
            if not isinstance(evaluation, dg.AssetCheckEvaluation):
                continue
            if key.name != FRESHNESS_CHECK and evaluation.severity != dg.AssetCheckSeverity.ERROR:
                continue
            found.append(
                FailedCheck(
                    key=key,
                    run_id=record.run_id,
                    at=record.create_timestamp,
                    partition=record.partition or _partitions_of(instance, record.run_id),
                    description=evaluation.description or "",
                    check_description=checks[key],
                    metadata_text=_metadata_text(dict(evaluation.metadata)),
                )
            )
    return found, newest


def _kind(failure: FailedCheck) -> Kind:
    return Kind.DEADLINE if failure.key.name == FRESHNESS_CHECK else Kind.CHECK


def _check_key(failure: FailedCheck) -> str:
    """One alert per check (all freshness checks are one) and business day."""
    return alerts.key_of(_kind(failure), failure.key.name, business_day(failure.at).date())


def check_alerts(settings: Alerting, failures: list[FailedCheck], known: set[str]) -> list[alerts.Alert]:
    """The failures of each check and day not told yet, as one alert each."""
    groups: dict[str, list[FailedCheck]] = defaultdict(list)
    for failure in sorted(failures, key=lambda f: f.at):
        if _check_key(failure) not in known:
            groups[_check_key(failure)].append(failure)
    return [check_alert(settings, _kind(group[0]), group) for group in groups.values()]


def alert_tick(
    instance: dg.DagsterInstance,
    engine: sa.Engine,
    checks: CheckDescriptions,
    cursor: str | None,
    now: datetime,
) -> dg.SensorResult:
    """One evaluation of the `alerts` sensor."""
    settings = alerting()
    state = json.loads(cursor) if cursor else {}
    with engine.connect() as conn:
        ended = alerts.ended_badly(conn, now - LOOKBACK)
        session_keys = {
            s.summary.session_id: alerts.key_of(
                Kind.SESSION, s.summary.session_id, business_day(s.summary.completed_at).date()
            )
            for s in ended
            if s.summary.completed_at
        }
        failures, newest = failed_checks(instance, checks, state.get("check_after"), now)
        known = alerts.known(conn, [*session_keys.values(), *(_check_key(f) for f in failures)])
    batch = [
        session_alert(instance, settings, s)
        for s in ended
        if session_keys.get(s.summary.session_id, "") not in known
    ]
    batch += check_alerts(settings, failures, known)
    new = notify.raise_alerts(engine, settings, batch, now)
    deliveries = notify.deliver_due(engine, settings, now)
    parts = [f"new: {', '.join(new)}" if new else "no new alert"]
    parts += [str(d) for d in deliveries]
    return dg.SensorResult(
        skip_reason="; ".join(parts), cursor=json.dumps({"check_after": newest}, sort_keys=True)
    )


@automation.sensor(
    "alerts",
    operations().sensor_interval,
    "Tells a person (SIZEAGG_SMTP_*, SIZEAGG_ALERT_WEBHOOK_*): every aggregation session that "
    "ended failed or cancelled, every failed ERROR-severity asset check and every missed "
    "freshness deadline, once per kind, subject and business day (capacity_alerts), then "
    "sends what is due, retrying a failed delivery with backoff. Nothing configured: alerts are "
    "only recorded.",
)
def alerts_sensor(context: dg.SensorEvaluationContext, db: AppDatabase) -> dg.SensorResult:
    checks = check_descriptions(context.repository_def)
    return alert_tick(context.instance, db.engine, checks, context.cursor, utc_now())


@automation.run_failure_sensor(
    "run_failure_alerts",
    operations().sensor_interval,
    "Dagster's run-failure sensor over every job of sizeagg: a failed run that no session "
    "reports (the forecast, a checks job, a backfill without aggregation_session) is told "
    "at once, with its job, partition, error and a link; runs of an execution are told by "
    "their session's alert instead.",
)
def run_failure_alerts(context: dg.RunFailureSensorContext, db: AppDatabase) -> dg.SkipReason:
    run = context.dagster_run
    if reported_by_a_session(context.instance, run):
        return dg.SkipReason(f"run {run.run_id[:8]} of {run.job_name}: its session reports it")
    settings, now = alerting(), utc_now()
    record = context.instance.get_run_record_by_id(run.run_id)
    ended = record.end_time if record and record.end_time else now.timestamp()
    alert = run_alert(context.instance, settings, run, ended)
    new = notify.raise_alerts(db.engine, settings, [alert], now)
    deliveries = notify.deliver_due(db.engine, settings, now, keys=[alert.key])
    told = "; ".join(str(d) for d in deliveries) or ("recorded" if new else "already told")
    return dg.SkipReason(f"{alert.key}: {told}")
