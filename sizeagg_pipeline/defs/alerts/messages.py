"""What each alert says: a failed session, a failed run, a failed check, a missed deadline.

Each builder reads what a person needs from the Dagster instance (the execution's
runs and partitions, the run's error, the check's description) and links to the
page of the UI (SIZEAGG_UI_URL) that shows it.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote, urlencode

import dagster as dg

from ...core.alerts import Alert, EndedSession, Kind, Severity
from ...core.sessions import SessionStatus
from ...core.settings import Alerting, as_utc
from ..aggregates.partitions import CALENDAR
from ..sessions.asset import aggregation_session
from ..sessions.executions import ENDED_BADLY, period_runs, run_error
from ..sessions.vocabulary import BACKFILL_TAG, EXECUTION_TAG, PARTITION_TAG, RANGE_END_TAG, RANGE_START_TAG


def business_time(moment: datetime | float) -> str:
    instant = datetime.fromtimestamp(moment, CALENDAR.tz) if isinstance(moment, float) else as_utc(moment)
    return f"{instant.astimezone(CALENDAR.tz):%Y-%m-%d %H:%M} {CALENDAR.timezone}"


def business_day(moment: datetime | float) -> datetime:
    instant = datetime.fromtimestamp(moment, CALENDAR.tz) if isinstance(moment, float) else as_utc(moment)
    return instant.astimezone(CALENDAR.tz)


def runs_link(settings: Alerting, tags: dict[str, str]) -> str:
    """The Runs page filtered on one tag (a backfill has its own page)."""
    if BACKFILL_TAG in tags:
        return f"{settings.ui_url}/runs/b/{quote(tags[BACKFILL_TAG])}?tab=runs"
    ((key, value),) = tags.items()
    return f"{settings.ui_url}/runs?{urlencode({'q[]': f'tag:{key}={value}'})}"


def run_link(settings: Alerting, run_id: str) -> str:
    return f"{settings.ui_url}/runs/{run_id}"


# --------------------------------------------------------------------------- sessions


def session_alert(instance: dg.DagsterInstance, settings: Alerting, session: EndedSession) -> Alert:
    """A failed or cancelled session: the execution, its partitions, the reason, the counts."""
    execution = str(session.details.get("execution") or "(unknown execution)")
    run_ids = [r for r in session.details.get("dagster_run_ids") or [] if isinstance(r, str)]
    runs = period_runs(instance, run_ids=run_ids) if run_ids else []
    link_tags: dict[str, str] = {}
    for run in instance.get_runs(dg.RunsFilter(run_ids=run_ids)) if run_ids else []:
        for tag in (EXECUTION_TAG, BACKFILL_TAG):
            if tag in run.tags:
                link_tags = {tag: run.tags[tag]}
    session_run = session.details.get("session_run_id")
    if link_tags:
        link = runs_link(settings, link_tags)
    elif isinstance(session_run, str):
        link = run_link(settings, session_run)
    else:
        link = runs_link(settings, {EXECUTION_TAG: execution})
    summary = session.summary
    ended = summary.completed_at or summary.started_at
    lines = [
        f"Execution: {execution} ({summary.sync_type})",
        f"Session: {summary.session_id} {summary.status}" + (f" at {business_time(ended)}" if ended else ""),
        f"Instances: {summary.total_instances} in the session, {summary.successful_instances} succeeded, "
        f"{summary.failed_instances} failed",
    ]
    if runs:
        lines.append(
            "Partitions: " + "; ".join(f"{r.period} {r.partitions} {r.status.value.lower()}" for r in runs)
        )
    lines.append(f"Reason: {session.reason or 'not recorded'}")
    failed = summary.status == SessionStatus.FAILED
    return Alert(
        kind=Kind.SESSION,
        subject=summary.session_id,
        day=business_day(ended).date() if ended else CALENDAR.today(),
        severity=Severity.CRITICAL if failed else Severity.WARNING,
        title=f"aggregation session {summary.status}: {execution}",
        text="\n".join(lines),
        link=link,
    )


# --------------------------------------------------------------------------- runs


def reported_by_a_session(instance: dg.DagsterInstance, run: dg.DagsterRun) -> bool:
    """A run whose failure a session reports: part of an execution, or a session step."""
    if EXECUTION_TAG in run.tags or aggregation_session.key in (run.asset_selection or ()):
        return True
    backfill = instance.get_backfill(run.tags[BACKFILL_TAG]) if BACKFILL_TAG in run.tags else None
    return backfill is not None and aggregation_session.key in (backfill.asset_selection or ())


def run_alert(
    instance: dg.DagsterInstance, settings: Alerting, run: dg.DagsterRun, failed_at: float
) -> Alert:
    tags = run.tags
    first = tags.get(RANGE_START_TAG) or tags.get(PARTITION_TAG)
    last = tags.get(RANGE_END_TAG) or first
    started_by = next(
        (
            f"{kind} {tags[f'dagster/{kind}_name']}"
            for kind in ("schedule", "sensor")
            if f"dagster/{kind}_name" in tags
        ),
        "a person (launched by hand)",
    )
    lines = [
        f"Job: {run.job_name}",
        f"Run: {run.run_id} {run.status.value.lower()} at {business_time(failed_at)}",
        f"Started by: {started_by}",
    ]
    if first:
        lines.append(f"Partition: {first}" + (f"...{last}" if last != first else ""))
    if run.status in ENDED_BADLY:
        lines.append(f"Error: {run_error(instance, run) or 'not recorded'}")
    return Alert(
        kind=Kind.RUN,
        subject=run.run_id,
        day=business_day(failed_at).date(),
        severity=Severity.WARNING,
        title=f"run failed: {run.job_name}",
        text="\n".join(lines),
        link=run_link(settings, run.run_id),
    )


# --------------------------------------------------------------------------- checks


@dataclass(frozen=True)
class FailedCheck:
    """One failed evaluation of an asset check, as the alert sensor found it."""

    key: dg.AssetCheckKey
    run_id: str
    at: float  # epoch seconds
    partition: str | None
    description: str  # what the evaluation said
    check_description: str  # what the check is (its spec)
    metadata_text: str  # the evaluation's short metadata values, one line


def check_alert(settings: Alerting, kind: Kind, failures: Sequence[FailedCheck]) -> Alert:
    """Every failure of one check (or of the freshness checks) in one message."""
    name = failures[0].key.name
    lines = []
    for failure in failures:
        where = failure.key.asset_key.to_user_string() + (
            f" {failure.partition}" if failure.partition else ""
        )
        lines.append(
            f"- {where} (run {failure.run_id[:8]}, {business_time(failure.at)}): {failure.description}"
        )
        if failure.metadata_text:
            lines.append(f"  {failure.metadata_text}")
    lines.append(f"Check: {name}: {failures[0].check_description}")
    assets = sorted({f.key.asset_key.to_user_string() for f in failures})
    first_asset = failures[0].key.asset_key.to_user_string()
    if kind is Kind.DEADLINE:
        title = f"missed deadline: {', '.join(assets)} not materialized in time"
    else:
        title = f"check failed: {name} on {', '.join(assets)}"
    return Alert(
        kind=kind,
        subject=name,
        day=business_day(failures[0].at).date(),
        severity=Severity.WARNING if kind is Kind.DEADLINE else Severity.CRITICAL,
        title=title,
        text="\n".join(lines),
        link=f"{settings.ui_url}/assets/{quote(first_asset)}?view=checks",
    )
