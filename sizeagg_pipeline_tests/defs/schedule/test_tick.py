"""defs/schedule/tick.py: the four tick schedules, evaluated at chosen instants, request exactly the
expected partitions, once; they catch up missed days and skip days whose execution completed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import dagster as dg
import pytest
import sqlalchemy as sa

from sizeagg_pipeline.cli.run import run_tick
from sizeagg_pipeline.core.periods import PERIODS
from sizeagg_pipeline.definitions import defs
from sizeagg_pipeline.defs.resources import AppDatabase
from sizeagg_pipeline.defs.schedule import tick
from sizeagg_pipeline.defs.sessions import vocabulary
from sizeagg_pipeline_tests.support.data import add_instances, fill_days
from sizeagg_pipeline_tests.support.session_rows import run_period_jobs

SHANGHAI = ZoneInfo("Asia/Shanghai")
TICK = time(4, 0)
JOBS = [
    "daily_aggregation_job",
    "weekly_aggregation_job",
    "monthly_aggregation_job",
    "quarterly_aggregation_job",
]


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=SHANGHAI)


# instant of the tick (business time) → business day, then daily/weekly/monthly/quarterly keys
CASES = {
    "a Monday": (at(2024, 7, 8, 4, 0), "2024-07-07", "2024-07-07", "2024-07-01", "2024-07-01", "2024-07-01"),
    "the 1st of a month": (
        at(2024, 5, 1, 4, 0),
        "2024-04-30",
        "2024-04-30",
        "2024-04-29",
        "2024-04-01",
        "2024-04-01",
    ),
    "the 1st of a quarter": (
        at(2024, 10, 1, 4, 0),
        "2024-09-30",
        "2024-09-30",
        "2024-09-30",
        "2024-09-01",
        "2024-07-01",
    ),
    "31 December": (
        at(2024, 12, 31, 4, 0),
        "2024-12-30",
        "2024-12-30",
        "2024-12-30",
        "2024-12-01",
        "2024-10-01",
    ),
    "1 January": (at(2025, 1, 1, 4, 0), "2024-12-31", "2024-12-31", "2024-12-30", "2024-12-01", "2024-10-01"),
}


@dataclass(frozen=True)
class Tick:
    """One evaluation of the four tick schedules at one instant, as the tests read it."""

    run_requests: list[dg.RunRequest]
    skip_messages: list[str]


def evaluate(instant: datetime, instance: dg.DagsterInstance) -> Tick:
    """Evaluate the deployed schedules as the scheduler does at their tick `instant`."""
    requests, skips = [], []
    for schedule in tick.ticks:
        with dg.build_schedule_context(
            instance=instance,
            scheduled_execution_time=instant,
            repository_def=defs.get_repository_def(),
            resources={"db": AppDatabase()},
        ) as context:
            data = schedule.evaluate_tick(context)
        requests += [resolved(r) for r in data.run_requests or []]
        if data.skip_message:
            skips.append(data.skip_message)
    return Tick(requests, skips)


def resolved(request: dg.RunRequest) -> dg.RunRequest:
    """What the daemon does with a request: validate the partition key against the job, add its tags."""
    assert request.job_name is not None  # the tick names the job of every request
    job = defs.resolve_job_def(request.job_name)
    return request.with_resolved_tags_and_config(job, [], None)


@pytest.mark.parametrize("case", list(CASES))
def test_tick_requests_exactly_the_partitions_of_the_previous_day(
    case: str, engine: sa.Engine, dagster_instance: dg.DagsterInstance
) -> None:
    instant, day, *keys = CASES[case]
    result = evaluate(instant, dagster_instance)
    assert [(r.job_name, r.partition_key) for r in result.run_requests] == list(zip(JOBS, keys, strict=True))
    assert [r.run_key for r in result.run_requests] == [f"tick:{day}:{p}" for p in PERIODS]
    for request in result.run_requests:
        assert request.tags[vocabulary.EXECUTION_TAG] == f"scheduled:{day}"
        assert request.tags[vocabulary.TRIGGER_TAG] == "tick"
        assert vocabulary.sync_type_of(request.tags) == "scheduled_task"
        # the few tags a person filters on; the period comes from the job, the rest is the default
        assert {k for k in request.tags if k.startswith("sizeagg/")} == {
            "sizeagg/execution",
            "sizeagg/trigger",
        }
        assert request.tags["dagster/partition"] == request.partition_key
    assert result.skip_messages == []


def test_before_the_tick_time_the_previous_tick_applies() -> None:
    # 03:59 on Monday 2024-07-08 is still before that day's tick: Saturday's execution is due
    assert tick.due_day(at(2024, 7, 8, 3, 59), TICK) == date(2024, 7, 6)
    assert tick.due_day(at(2024, 7, 8, 4, 0), TICK) == date(2024, 7, 7)
    # the same instant in UTC (20:00 the evening before) is the same business instant
    assert tick.due_day(datetime(2024, 7, 7, 20, 0, tzinfo=ZoneInfo("UTC")), TICK) == date(2024, 7, 7)
    # a configured later tick (SIZEAGG_DAILY_TICK=06:30)
    assert tick.due_day(at(2024, 7, 8, 5, 0), time(6, 30)) == date(2024, 7, 6)


def test_run_keys_deduplicate_the_tick(engine: sa.Engine, dagster_instance: dg.DagsterInstance) -> None:
    first = evaluate(at(2024, 7, 8, 4, 0), dagster_instance)
    # a scheduler restart re-evaluates the tick: same run keys, so the daemon (which
    # launches one run per run key and schedule) launches nothing new
    again = evaluate(at(2024, 7, 8, 4, 0), dagster_instance)
    assert [r.run_key for r in again.run_requests] == [r.run_key for r in first.run_requests]
    assert len({r.run_key for r in first.run_requests}) == 4
    # the next day's tick launches the next day
    nxt = evaluate(at(2024, 7, 9, 4, 0), dagster_instance)
    assert {r.tags[vocabulary.EXECUTION_TAG] for r in nxt.run_requests} == {"scheduled:2024-07-08"}


def ticked(instance: dg.DagsterInstance, day: date) -> None:
    """A daily run the tick launched for `day` (what the scheduler leaves in the instance)."""
    instance.create_run_for_job(
        job_def=defs.resolve_job_def("daily_aggregation_job"),
        tags={**tick.tick_run_request(day, PERIODS[0]).tags, "dagster/partition": day.isoformat()},
        status=dg.DagsterRunStatus.SUCCESS,
    )


def test_missed_ticks_are_caught_up(engine: sa.Engine, dagster_instance: dg.DagsterInstance) -> None:
    """The scheduler was down for three ticks: each missed day gets its own execution."""
    ticked(dagster_instance, date(2024, 7, 4))
    result = evaluate(at(2024, 7, 8, 4, 0), dagster_instance)
    executions = sorted({r.tags[vocabulary.EXECUTION_TAG] for r in result.run_requests})
    assert executions == ["scheduled:2024-07-05", "scheduled:2024-07-06", "scheduled:2024-07-07"]
    assert len(result.run_requests) == 12
    # after more than a week, only the last seven days: older ones are a backfill's job
    far = evaluate(at(2024, 7, 30, 4, 0), dagster_instance)
    days = sorted({r.tags["dagster/partition"] for r in far.run_requests if r.job_name == JOBS[0]})
    assert days == [f"2024-07-{d}" for d in range(23, 30)]


def test_a_day_whose_execution_completed_is_not_launched_again(
    engine: sa.Engine, dagster_instance: dg.DagsterInstance
) -> None:
    """`sizeagg run` (or a backfill, or an earlier tick) already aggregated the day: the tick skips it."""
    yesterday = tick.CALENDAR.yesterday()
    with engine.begin() as conn:
        fill_days(conn, add_instances(conn, 2), yesterday - timedelta(days=3), yesterday)
    instant = datetime.combine(yesterday + timedelta(days=1), TICK, SHANGHAI)
    before = evaluate(instant, dagster_instance)
    assert len(before.run_requests) == 4  # nothing ran yet: the tick launches the day
    summary = run_tick(defs, dagster_instance, yesterday)
    assert summary.status == "completed"
    after = evaluate(instant, dagster_instance)
    assert after.run_requests == []
    assert len(after.skip_messages) == 4
    assert all(
        f"{yesterday} already completed (session {summary.session_id})" in m for m in after.skip_messages
    )
    # A lone run rewrites the day's daily slices afterwards (the demo's history runs do):
    # the day's execution still completed, so it is still skipped.
    run_period_jobs(dagster_instance, {}, {"daily": yesterday.isoformat()})
    assert evaluate(instant, dagster_instance).run_requests == []


def test_a_day_aggregated_before_it_ended_is_launched(
    engine: sa.Engine, dagster_instance: dg.DagsterInstance
) -> None:
    """A run during the day (its data incomplete) does not count as the day's execution."""
    today = tick.CALENDAR.today()
    with engine.begin() as conn:
        fill_days(conn, add_instances(conn, 2), today - timedelta(days=3), today)
    assert run_tick(defs, dagster_instance, today).status == "completed"
    instant = datetime.combine(today + timedelta(days=1), TICK, SHANGHAI)
    assert len(evaluate(instant, dagster_instance).run_requests) == 4


def test_the_ticks_are_schedules_at_the_business_time_and_run_by_default() -> None:
    repository = defs.get_repository_def()
    schedules = {s.name: s for s in repository.schedule_defs}
    for period, job in zip(PERIODS, JOBS, strict=True):
        schedule = schedules[f"aggregation_tick_{period}"]
        assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
        assert (schedule.cron_schedule, schedule.execution_timezone) == ("0 4 * * *", "Asia/Shanghai")
        assert schedule.job_name == job
    forecast = schedules["capacity_forecast_schedule"]
    assert forecast.default_status == dg.DefaultScheduleStatus.RUNNING
    assert "daily_aggregation_tick" not in {s.name for s in repository.sensor_defs}


def test_tick_can_be_switched_off(
    monkeypatch: pytest.MonkeyPatch, engine: sa.Engine, dagster_instance: dg.DagsterInstance
) -> None:
    """SIZEAGG_DAILY_TICK=off: the schedules stay running and launch nothing."""
    off = replace(tick.operations(), daily_tick=None)
    monkeypatch.setattr(tick, "operations", lambda: off)
    result = evaluate(at(2024, 7, 8, 4, 0), dagster_instance)
    assert result.run_requests == [] and all("off" in m for m in result.skip_messages)
