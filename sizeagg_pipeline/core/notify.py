"""Telling a person: email over SMTP and a chat webhook, Python's standard library only.

`deliver_due` works through the alerts of `capacity_alerts` that are due: it claims
one, sends it to every configured channel that has not taken it yet, and stores what
each channel answered. A failed channel is retried on a later call, after the waits
of `alerts.RETRY_WAITS`, then the alert is recorded `failed`. Nothing here raises
for a channel's failure, so a delivery never blocks or fails the session or run
that raised the alert. Secrets (the SMTP password, the webhook URL with its token)
are never part of an error text.
"""

from __future__ import annotations

import json
import smtplib
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

import sqlalchemy as sa

from . import alerts
from .alerts import Alert
from .settings import Alerting, Smtp, Webhook, as_utc, utc_now

TIMEOUT_SECONDS = 10  # one connection attempt to a mail server or webhook
PATIENCE = timedelta(seconds=15)  # how long `sizeagg run` waits for retries before it exits
ERROR_CHARS = 300
# What each chat accepts in one text message (bytes of UTF-8); longer text is cut at a line.
TEXT_LIMITS = {"wecom": 2000, "dingtalk": 18000, "feishu": 18000, "slack": 38000}


class DeliveryError(Exception):
    """A channel did not take the message; the text is one line, without secrets."""


def _one_line(exc: BaseException) -> str:
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text[:ERROR_CHARS]


def subject(alert: Alert) -> str:
    return f"[sizeagg] {alert.severity.upper()}: {alert.title}"


def email_message(smtp: Smtp, alert: Alert) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = subject(alert)
    message["From"] = smtp.sender
    message["To"] = ", ".join(smtp.recipients)
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = make_msgid(domain="sizeagg")
    message["X-Sizeagg-Alert"] = alert.key
    message.set_content(alert.body())
    return message


def send_email(smtp: Smtp, alert: Alert) -> None:
    context = ssl.create_default_context()
    try:
        client = (
            smtplib.SMTP_SSL(smtp.host, smtp.port, timeout=TIMEOUT_SECONDS, context=context)
            if smtp.security == "ssl"
            else smtplib.SMTP(smtp.host, smtp.port, timeout=TIMEOUT_SECONDS)
        )
        with client:
            if smtp.security == "starttls":
                client.starttls(context=context)
            if smtp.user and smtp.password:
                client.login(smtp.user, smtp.password)
            client.send_message(email_message(smtp, alert))
    except (OSError, smtplib.SMTPException) as exc:
        raise DeliveryError(_one_line(exc)) from None


def _cut(text: str, limit: int | None) -> str:
    if limit is None or len(text.encode()) <= limit:
        return text
    note = "\n… (cut; the whole message is in capacity_alerts)"
    kept: list[str] = []
    size = len(note.encode())
    for line in text.splitlines():
        size += len(line.encode()) + 1
        if size > limit:
            break
        kept.append(line)
    return "\n".join(kept) + note


def webhook_payload(form: str, alert: Alert) -> dict[str, Any]:
    """The JSON body each chat expects (a text message), or sizeagg's own for `generic`."""
    if form == "generic":
        return {
            "source": "sizeagg",
            "key": alert.key,
            "kind": alert.kind.value,
            "severity": alert.severity.value,
            "day": alert.day.isoformat(),
            "title": alert.title,
            "text": alert.text,
            "link": alert.link,
        }
    text = _cut(f"{subject(alert)}\n{alert.body()}", TEXT_LIMITS[form])
    if form == "slack":
        return {"text": text}
    if form == "feishu":
        return {"msg_type": "text", "content": {"text": text}}
    return {"msgtype": "text", "text": {"content": text}}  # dingtalk, wecom


def _refusal(form: str, answer: str) -> str | None:
    """Feishu, DingTalk and WeCom answer HTTP 200 with an error code in the body."""
    if form not in ("feishu", "dingtalk", "wecom"):
        return None
    try:
        body = json.loads(answer or "{}")
    except ValueError:
        return f"answer is not JSON: {answer[:100]!r}"
    if not isinstance(body, dict):
        return None
    code = body.get("errcode", body.get("code", body.get("StatusCode", 0)))
    if code in (0, None):
        return None
    return f"error {code}: {body.get('errmsg') or body.get('msg') or body.get('StatusMessage')}"


def post_webhook(webhook: Webhook, alert: Alert) -> None:
    body = json.dumps(webhook_payload(webhook.format, alert), ensure_ascii=False).encode()
    request = urllib.request.Request(
        webhook.url,
        data=body,
        headers={"Content-Type": "application/json; charset=utf-8", "User-Agent": "sizeagg"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
            answer = response.read(65536).decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        raise DeliveryError(f"HTTP {exc.code} {exc.reason}") from None
    except OSError as exc:  # URLError, timeouts, refused connections
        raise DeliveryError(_one_line(exc)) from None
    refusal = _refusal(webhook.format, answer)
    if refusal:
        raise DeliveryError(refusal)


def send(channel: str, settings: Alerting, alert: Alert) -> None:
    if channel == "email" and settings.smtp is not None:
        send_email(settings.smtp, alert)
    elif channel == "webhook" and settings.webhook is not None:
        post_webhook(settings.webhook, alert)
    else:
        raise DeliveryError(f"{channel} is not configured")


@dataclass(frozen=True)
class Delivery:
    """One attempt at one alert, as a sensor's or the CLI's log shows it."""

    key: str
    status: alerts.Status
    errors: dict[str, str]

    def __str__(self) -> str:
        problems = "; ".join(f"{channel}: {error}" for channel, error in self.errors.items())
        return f"{self.key} {self.status}" + (f" ({problems})" if problems else "")


def deliver_due(
    engine: sa.Engine,
    settings: Alerting,
    now: datetime,
    *,
    keys: Collection[str] | None = None,
    budget_seconds: float = 30.0,
) -> list[Delivery]:
    """Send every due alert (only `keys` when given) once, within about `budget_seconds`.

    Alerts left when the budget is spent stay due for the next call; a sensor tick
    thus stays short however many alerts a bad night produced.
    """
    started = time.monotonic()
    with engine.connect() as conn:
        ids = alerts.due(conn, now, keys)
    done = []
    for alert_id in ids:
        if time.monotonic() - started > budget_seconds:
            break
        with engine.begin() as conn:
            row = alerts.claim(conn, alert_id, now)
        if row is None:
            continue
        alert = alerts.alert_of(dict(row))
        results: dict[str, str | None] = {}
        for channel in settings.channels:
            if channel in alerts.sent_channels(dict(row)):
                continue
            try:
                send(channel, settings, alert)
                results[channel] = None
            except DeliveryError as exc:
                results[channel] = str(exc)
        with engine.begin() as conn:
            status = alerts.finish(conn, dict(row), results, now)
        errors = {c: e for c, e in results.items() if e is not None}
        done.append(Delivery(alert.key, status, errors))
    return done


def deliver_now(
    engine: sa.Engine, settings: Alerting, keys: Collection[str], patience: timedelta = PATIENCE
) -> list[Delivery]:
    """Deliver `keys` now, and retry while the next attempt is due within `patience`.

    For a process that exits afterwards (`sizeagg run`): what is still undelivered then
    stays due for the daemon's `alerts` sensor or the next `sizeagg run`.
    """
    deliveries: list[Delivery] = []
    give_up = time.monotonic() + patience.total_seconds()
    while True:
        now = utc_now()
        deliveries += deliver_due(engine, settings, now, keys=keys)
        with engine.connect() as conn:
            upcoming = alerts.next_attempt(conn, keys)
        if upcoming is None:
            return deliveries
        wait = (as_utc(upcoming) - utc_now()).total_seconds()
        if time.monotonic() + wait > give_up:
            return deliveries
        time.sleep(max(wait, 0.0))


def raise_alerts(engine: sa.Engine, settings: Alerting, batch: Collection[Alert], now: datetime) -> list[str]:
    """Record each alert (new keys only count), in one transaction; the keys that were new."""
    with engine.begin() as conn:
        return [a.key for a in batch if alerts.record(conn, a, now, settings.channels)]
