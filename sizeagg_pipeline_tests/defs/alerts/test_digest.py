"""defs/alerts/digest.py: the digest is sent once a day, from its time on; `off` sends none."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from sizeagg_pipeline.core.settings import alerting
from sizeagg_pipeline.defs.alerts.digest import digest_tick
from sizeagg_pipeline_tests.support.channels import webhook_server

TZ = ZoneInfo("Asia/Shanghai")


def test_once_a_day_from_its_time(engine: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    with webhook_server() as hook:
        for name, value in hook.env("feishu").items():
            monkeypatch.setenv(name, value)
        assert digest_tick(engine, alerting(), datetime(2026, 3, 18, 8, 59, tzinfo=TZ)) == (
            "today's digest is due at 09:00 Asia/Shanghai"
        )
        assert hook.requests == []
        told = digest_tick(engine, alerting(), datetime(2026, 3, 18, 9, 0, tzinfo=TZ))
        assert told == "digest:capacity:2026-03-18 sent"
        digest_tick(engine, alerting(), datetime(2026, 3, 18, 15, 0, tzinfo=TZ))  # a later tick, a restart
        assert len(hook.delivered) == 1
        text = hook.delivered[0]["content"]["text"]
        assert text.startswith(
            "[sizeagg] NORMAL: capacity digest for 2026-03-17: all normal\nCapacity digest for"
        )
        digest_tick(engine, alerting(), datetime(2026, 3, 19, 9, 30, tzinfo=TZ))  # the next day: its own
        assert len(hook.delivered) == 2
        monkeypatch.setenv("SIZEAGG_DIGEST_AT", "off")
        assert digest_tick(engine, alerting(), datetime(2026, 3, 20, 9, 30, tzinfo=TZ)) == (
            "the digest is off (SIZEAGG_DIGEST_AT=off)"
        )
        assert len(hook.requests) == 2
