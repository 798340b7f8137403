"""core/notify.py and core/alerts.py: alerts delivered to a real SMTP server and a real webhook.

Every test records alerts in a real application database (SQLite and PostgreSQL) and
delivers them to servers on loopback (`support/channels.py`); the assertions are on
what those servers received and on the `capacity_alerts` rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from sizeagg_pipeline.core import alerts, notify
from sizeagg_pipeline.core.alerts import Alert, Kind, Severity
from sizeagg_pipeline.core.schema import capacity_alerts
from sizeagg_pipeline.core.settings import alerting
from sizeagg_pipeline_tests.support.channels import (
    SmtpServer,
    WebhookServer,
    self_signed,
    smtp_server,
    webhook_server,
)

T0 = datetime(2026, 3, 18, 1, 0, tzinfo=UTC)
ALERT = Alert(
    kind=Kind.SESSION,
    subject="3f0c-session",
    day=date(2026, 3, 18),
    severity=Severity.CRITICAL,
    title="aggregation session failed: scheduled:2026-03-17",
    text="Execution: scheduled:2026-03-17\nReason: aggregation failed: daily partition 2026-03-17 failed",
    link="http://127.0.0.1:3000/runs?q%5B%5D=tag%3Asizeagg%2Fexecution%3Dscheduled%3A2026-03-17",
)


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with smtp_server() as server:
        yield server


@pytest.fixture
def hook() -> Iterator[WebhookServer]:
    with webhook_server() as server:
        yield server


def _use(monkeypatch: pytest.MonkeyPatch, *envs: dict[str, str]) -> None:
    for env in envs:
        for name, value in env.items():
            monkeypatch.setenv(name, value)


def _row(engine: sa.Engine, key: str = ALERT.key) -> dict[str, Any]:
    with engine.connect() as conn:
        return dict(
            conn.execute(sa.select(capacity_alerts).where(capacity_alerts.c.key == key)).mappings().one()
        )


def _raise(engine: sa.Engine, alert: Alert = ALERT, now: datetime = T0) -> list[str]:
    return notify.raise_alerts(engine, alerting(), [alert], now)


def test_one_email_and_one_post_per_key(
    engine: sa.Engine, smtp: SmtpServer, hook: WebhookServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _use(monkeypatch, smtp.env("dba@example.com, oncall@example.com"), hook.env())
    assert _raise(engine) == [ALERT.key]
    assert _raise(engine, now=T0 + timedelta(minutes=1)) == []  # seen again: not a new alert
    [delivery] = notify.deliver_due(engine, alerting(), T0 + timedelta(minutes=1))
    assert (delivery.status, delivery.errors) == ("sent", {})
    assert notify.deliver_due(engine, alerting(), T0 + timedelta(hours=1)) == []

    [mail] = smtp.messages
    assert mail["Subject"] == "[sizeagg] CRITICAL: aggregation session failed: scheduled:2026-03-17"
    assert (mail["From"], mail["To"]) == ("sizeagg@example.com", "dba@example.com, oncall@example.com")
    assert mail["X-Sizeagg-Alert"] == "session:3f0c-session:2026-03-18"
    assert mail.get_content().replace("\r\n", "\n") == ALERT.text + "\n\n" + str(ALERT.link) + "\n"
    assert hook.delivered == [
        {
            "source": "sizeagg",
            "key": "session:3f0c-session:2026-03-18",
            "kind": "session",
            "severity": "critical",
            "day": "2026-03-18",
            "title": ALERT.title,
            "text": ALERT.text,
            "link": ALERT.link,
        }
    ]
    row = _row(engine)
    assert (row["status"], row["attempts"], row["severity"], row["message"]) == (
        "sent",
        1,
        "critical",
        ALERT.text,
    )
    assert row["outcome"]["email"]["status"] == "sent" and row["outcome"]["webhook"]["status"] == "sent"
    assert row["sent_at"] is not None and row["last_seen_at"] > row["first_seen_at"]


def test_starttls_with_a_login(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, engine: sa.Engine) -> None:
    cert, key = self_signed(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the client verifies the server's certificate
    with smtp_server(tls=(cert, key)) as server:
        _use(monkeypatch, server.env(security="starttls"))
        monkeypatch.setenv("SIZEAGG_SMTP_USER", "alerts@example.com")
        monkeypatch.setenv("SIZEAGG_SMTP_PASSWORD", "s3cret-pa55")
        _raise(engine)
        [delivery] = notify.deliver_due(engine, alerting(), T0)
    assert delivery.status == "sent", delivery
    assert server.logins == [("alerts@example.com", "s3cret-pa55")]
    assert len(server.messages) == 1


def test_a_refusing_mail_server_and_a_webhook_that_fails_once(
    engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Retried with backoff; the webhook is sent once it answers 200 and never again; email ends failed."""
    with smtp_server(refuse=True) as smtp, webhook_server(statuses=[500]) as hook:
        _use(monkeypatch, smtp.env(), hook.env("slack"))
        _raise(engine)
        first = notify.deliver_due(engine, alerting(), T0)
        assert [d.status for d in first] == ["pending"]
        assert first[0].errors == {
            "email": "SMTPDataError: (554, b'5.7.1 Message refused by the test server')",
            "webhook": "HTTP 500 Internal Server Error",
        }
        row = _row(engine)
        assert (row["attempts"], row["sent_at"]) == (1, None)
        assert notify.deliver_due(engine, alerting(), T0 + timedelta(seconds=9)) == []  # not due yet
        waits = [sum(alerts.RETRY_WAITS[:n], timedelta()) for n in range(1, len(alerts.RETRY_WAITS) + 1)]
        statuses = [[d.status for d in notify.deliver_due(engine, alerting(), T0 + wait)] for wait in waits]
        assert statuses == [["pending"], ["pending"], ["failed"]]
        assert notify.deliver_due(engine, alerting(), T0 + timedelta(days=1)) == []  # given up
    assert smtp.attempts == alerts.MAX_ATTEMPTS and smtp.messages == []
    assert len(hook.requests) == 2 and len(hook.delivered) == 1  # 500, then 200, then not again
    assert hook.delivered[0]["text"].startswith("[sizeagg] CRITICAL: aggregation session failed")
    row = _row(engine)
    assert (row["status"], row["attempts"]) == ("failed", alerts.MAX_ATTEMPTS)
    assert row["outcome"]["webhook"]["status"] == "sent" and row["outcome"]["webhook"]["attempt"] == 2
    assert row["outcome"]["email"] == {
        "status": "failed",
        "attempt": 4,
        "error": "SMTPDataError: (554, b'5.7.1 Message refused by the test server')",
    }
    assert row["sent_at"] is not None  # the webhook told a person


def test_a_server_that_is_down_is_a_delivery_failure_not_an_error(
    engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    with smtp_server() as gone:
        port = gone.port
    _use(monkeypatch, {"SIZEAGG_SMTP_HOST": "127.0.0.1", "SIZEAGG_SMTP_PORT": str(port)})
    _use(monkeypatch, {"SIZEAGG_SMTP_SECURITY": "none", "SIZEAGG_ALERT_TO": "dba@example.com"})
    monkeypatch.setenv("SIZEAGG_ALERT_FROM", "sizeagg@example.com")
    _raise(engine)
    [delivery] = notify.deliver_due(engine, alerting(), T0)
    assert delivery.status == "pending" and "ConnectionRefusedError" in delivery.errors["email"]


def test_nothing_configured_records_the_alert_and_sends_nothing(engine: sa.Engine) -> None:
    assert alerting().channels == ()
    assert _raise(engine) == [ALERT.key]
    assert notify.deliver_due(engine, alerting(), T0 + timedelta(hours=1)) == []
    row = _row(engine)
    assert (row["status"], row["outcome"], row["sent_at"]) == (
        "recorded",
        {"channels": "none configured"},
        None,
    )


def test_one_sender_wins_a_due_alert(
    engine: sa.Engine, monkeypatch: pytest.MonkeyPatch, hook: WebhookServer
) -> None:
    _use(monkeypatch, hook.env())
    _raise(engine)
    with engine.begin() as conn:
        [alert_id] = alerts.due(conn, T0)
        assert alerts.claim(conn, alert_id, T0) is not None
        assert alerts.claim(conn, alert_id, T0) is None  # taken
    # a sender that died holding it: due again once its lease has passed
    assert notify.deliver_due(engine, alerting(), T0 + timedelta(minutes=1)) == []
    [late] = notify.deliver_due(engine, alerting(), T0 + alerts.LEASE)
    assert late.status == "sent" and len(hook.delivered) == 1


@pytest.mark.parametrize(
    ("form", "expected"),
    [
        ("slack", {"text": "[sizeagg] WARNING: t\nline\n\nhttp://ui/x"}),
        ("feishu", {"msg_type": "text", "content": {"text": "[sizeagg] WARNING: t\nline\n\nhttp://ui/x"}}),
        ("dingtalk", {"msgtype": "text", "text": {"content": "[sizeagg] WARNING: t\nline\n\nhttp://ui/x"}}),
        ("wecom", {"msgtype": "text", "text": {"content": "[sizeagg] WARNING: t\nline\n\nhttp://ui/x"}}),
    ],
)
def test_chat_formats(
    form: str, expected: dict[str, Any], hook: WebhookServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _use(monkeypatch, hook.env(form))
    alert = Alert(Kind.RUN, "r", date(2026, 3, 18), Severity.WARNING, "t", "line", "http://ui/x")
    notify.send("webhook", alerting(), alert)
    assert hook.delivered == [expected]


def test_chat_errors_name_the_failure_never_the_token(monkeypatch: pytest.MonkeyPatch) -> None:
    with webhook_server() as hook:
        _use(monkeypatch, hook.env("feishu"))
        alert = Alert(Kind.RUN, "r", date(2026, 3, 18), Severity.WARNING, "t", "x" * 10)
        settings = alerting()
    # A closed server: the error names the failure, never the URL and its token.
    with pytest.raises(notify.DeliveryError) as refused:
        notify.send("webhook", settings, alert)
    assert "secret-token" not in str(refused.value) and "Connection refused" in str(refused.value)
    assert notify._refusal(
        "feishu", '{"code": 19001, "msg": "param invalid: incoming webhook access token invalid"}'
    ) == ("error 19001: param invalid: incoming webhook access token invalid")
    assert notify._refusal("dingtalk", '{"errcode": 310000, "errmsg": "keywords not in content"}') == (
        "error 310000: keywords not in content"
    )
    assert notify._refusal("wecom", '{"errcode": 0, "errmsg": "ok"}') is None


def test_a_long_message_is_cut_to_what_wecom_accepts(
    hook: WebhookServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _use(monkeypatch, hook.env("wecom"))
    text = "\n".join(f"WARNING  growth   i{n}/db: +31.0 % (+21,504 MB)" for n in range(200))
    notify.send(
        "webhook", alerting(), Alert(Kind.DIGEST, "capacity", date(2026, 3, 18), Severity.WARNING, "d", text)
    )
    content = hook.delivered[0]["text"]["content"]
    assert len(content.encode()) <= notify.TEXT_LIMITS["wecom"]
    assert content.endswith("… (cut; the whole message is in capacity_alerts)")
