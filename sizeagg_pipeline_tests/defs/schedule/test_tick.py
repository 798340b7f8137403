"""defs/schedule/tick.py: the daily tick at chosen instants requests exactly the expected partitions, once."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from sizeagg_pipeline.definitions import defs
from sizeagg_pipeline.defs.schedule import tick
from sizeagg_pipeline.defs.sessions import vocabulary

SHANGHAI = ZoneInfo("Asia/Shanghai")
TICK = time(4, 0)


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
class Skip:
    skip_message: str


@dataclass(frozen=True)
class Tick:
    """One evaluation of the tick sensor, as the tests read it (a `SensorResult` without Optionals)."""

    run_requests: list[dg.RunRequest]
    cursor: str | None
    skip_reason: Skip


def evaluate(
    instant: datetime, cursor: str | None, monkeypatch: pytest.MonkeyPatch, instance: dg.DagsterInstance
) -> Tick:
    """Evaluate the deployed sensor definition with its clock at `instant`."""
    monkeypatch.setattr(tick, "utc_now", lambda: instant)
    context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
    data = tick.daily_aggregation_tick.evaluate_tick(context)
    return Tick(list(data.run_requests or []), data.cursor, Skip(data.skip_message or ""))


def resolved(request: dg.RunRequest) -> dg.RunRequest:
    """What the daemon does with a request: validate the partition key against the job, add its tags."""
    assert request.job_name is not None  # the tick names the job of every request
    job = defs.resolve_job_def(request.job_name)
    return request.with_resolved_tags_and_config(job, [], None)


@pytest.mark.parametrize("case", list(CASES))
def test_tick_requests_exactly_the_partitions_of_the_previous_day(
    case: str, monkeypatch: pytest.MonkeyPatch, dagster_instance: dg.DagsterInstance
) -> None:
    instant, day, *keys = CASES[case]
    result = evaluate(instant, None, monkeypatch, dagster_instance)
    requests = [resolved(r) for r in result.run_requests]
    assert [(r.job_name, r.partition_key) for r in requests] == [
        ("daily_aggregation_job", keys[0]),
        ("weekly_aggregation_job", keys[1]),
        ("monthly_aggregation_job", keys[2]),
        ("quarterly_aggregation_job", keys[3]),
    ]
    assert [r.run_key for r in requests] == [
        f"tick:{day}:{p}" for p in ("daily", "weekly", "monthly", "quarterly")
    ]
    for request in requests:
        assert request.tags[vocabulary.EXECUTION_TAG] == f"scheduled:{day}"
        assert request.tags[vocabulary.SYNC_TYPE_TAG] == "scheduled_task"
        assert request.tags[vocabulary.DATE_TAG] == day
        assert request.tags[vocabulary.TRIGGER_TAG] == "tick"
        assert request.tags[vocabulary.RUNS_TAG] == "4"
        assert request.tags["dagster/partition"] == request.partition_key
    assert result.cursor == day


def test_before_the_tick_time_the_previous_tick_applies(dagster_instance: dg.DagsterInstance) -> None:
    # 03:59 on Monday 2024-07-08 is still before that day's tick: Saturday's execution is due
    assert tick.due_day(at(2024, 7, 8, 3, 59), TICK) == date(2024, 7, 6)
    assert tick.due_day(at(2024, 7, 8, 4, 0), TICK) == date(2024, 7, 7)
    # the same instant in UTC (20:00 the evening before) is the same business instant
    assert tick.due_day(datetime(2024, 7, 7, 20, 0, tzinfo=ZoneInfo("UTC")), TICK) == date(2024, 7, 7)
    # a configured later tick (SIZEAGG_DAILY_TICK=06:30)
    assert tick.due_day(at(2024, 7, 8, 5, 0), time(6, 30)) == date(2024, 7, 6)


def test_run_keys_deduplicate_the_tick(
    monkeypatch: pytest.MonkeyPatch, dagster_instance: dg.DagsterInstance
) -> None:
    first = evaluate(at(2024, 7, 8, 4, 0, 30), None, monkeypatch, dagster_instance)
    # a daemon restart before the cursor was saved re-evaluates the tick: same run keys,
    # so the daemon (which launches one run per run key and sensor) launches nothing new
    again = evaluate(at(2024, 7, 8, 4, 1), None, monkeypatch, dagster_instance)
    assert [r.run_key for r in again.run_requests] == [r.run_key for r in first.run_requests]
    assert len({r.run_key for r in first.run_requests}) == 4
    # with the saved cursor, the rest of the day requests nothing
    for instant in (at(2024, 7, 8, 4, 1), at(2024, 7, 8, 23, 59), at(2024, 7, 9, 3, 59)):
        later = evaluate(instant, first.cursor, monkeypatch, dagster_instance)
        assert later.run_requests == [] and "was launched" in later.skip_reason.skip_message
    # the next day's tick launches the next day
    nxt = evaluate(at(2024, 7, 9, 4, 0), first.cursor, monkeypatch, dagster_instance)
    assert {r.tags[vocabulary.EXECUTION_TAG] for r in nxt.run_requests} == {"scheduled:2024-07-08"}


def test_missed_ticks_are_caught_up(
    monkeypatch: pytest.MonkeyPatch, dagster_instance: dg.DagsterInstance
) -> None:
    """The daemon was down for three ticks: each missed day gets its own execution."""
    result = evaluate(at(2024, 7, 8, 9, 0), "2024-07-04", monkeypatch, dagster_instance)
    executions_launched = sorted({r.tags[vocabulary.EXECUTION_TAG] for r in result.run_requests})
    assert executions_launched == ["scheduled:2024-07-05", "scheduled:2024-07-06", "scheduled:2024-07-07"]
    assert len(result.run_requests) == 12
    assert result.cursor == "2024-07-07"
    # after more than a week, only the last seven days: older ones are a backfill's job
    far = evaluate(at(2024, 7, 30, 9, 0), "2024-07-04", monkeypatch, dagster_instance)
    days = sorted({r.tags[vocabulary.DATE_TAG] for r in far.run_requests})
    assert days == [f"2024-07-{d}" for d in range(23, 30)]


def test_tick_sensor_targets_the_four_period_jobs_and_runs_by_default() -> None:
    sensor = defs.resolve_sensor_def("daily_aggregation_tick")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert {t.job_name for t in sensor.targets} == {
        "daily_aggregation_job",
        "weekly_aggregation_job",
        "monthly_aggregation_job",
        "quarterly_aggregation_job",
    }


def test_tick_can_be_switched_off(
    monkeypatch: pytest.MonkeyPatch, dagster_instance: dg.DagsterInstance
) -> None:
    """SIZEAGG_DAILY_TICK=off: the sensor stays running and launches nothing."""
    off = replace(tick.operations(), daily_tick=None)
    monkeypatch.setattr(tick, "operations", lambda: off)
    result = evaluate(at(2024, 7, 8, 4, 0), None, monkeypatch, dagster_instance)
    assert result.run_requests == [] and "off" in result.skip_reason.skip_message
