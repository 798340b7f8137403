"""core/settings.py, the alert settings: defaults, and a clear error naming the variable for bad ones.

Also at start-up: `sizeagg run` exits 2 with one line, and the code location fails to
load (`dagster definitions validate`), before anything runs.
"""

from __future__ import annotations

import os
import subprocess
from datetime import time
from pathlib import Path

import pytest

from sizeagg_pipeline.core.settings import alerting
from sizeagg_pipeline_tests.support.paths import BIN, ROOT

SMTP = {"SIZEAGG_SMTP_HOST": "mail.example.com", "SIZEAGG_ALERT_TO": "dba@example.com"}


def _set(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def test_defaults_send_nothing() -> None:
    settings = alerting()
    assert (settings.smtp, settings.webhook, settings.channels) == (None, None, ())
    assert (settings.freshness_deadline, settings.digest_at) == (time(6, 0), time(9, 0))
    assert (settings.growth_percent, settings.growth_gb, settings.growth_days) == (30, 20, 3)
    assert (settings.digest_max_lines, settings.ui_url) == (50, "http://127.0.0.1:3000")


def test_channels(monkeypatch: pytest.MonkeyPatch) -> None:
    _set(monkeypatch, {**SMTP, "SIZEAGG_SMTP_USER": "alerts@example.com", "SIZEAGG_SMTP_PASSWORD": "pw-x"})
    _set(monkeypatch, {"SIZEAGG_ALERT_TO": " a@example.com, b@example.com ,", "SIZEAGG_DIGEST_AT": "off"})
    _set(monkeypatch, {"SIZEAGG_ALERT_WEBHOOK_URL": "https://hooks.example.com/t0k3n"})
    settings = alerting()
    assert settings.smtp is not None and settings.webhook is not None
    assert (settings.smtp.port, settings.smtp.security) == (587, "starttls")
    assert settings.smtp.sender == "alerts@example.com"  # the login, when it is an address
    assert settings.smtp.recipients == ("a@example.com", "b@example.com")
    assert (settings.webhook.format, settings.digest_at, settings.channels) == (
        "generic",
        None,
        ("email", "webhook"),
    )
    assert "pw-x" not in repr(settings) and "t0k3n" not in repr(settings)  # secrets never in a repr
    monkeypatch.setenv("SIZEAGG_SMTP_SECURITY", "SSL")
    assert alerting().smtp.port == 465  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"SIZEAGG_ALERT_WEBHOOK_URL": "https://x", "SIZEAGG_ALERT_WEBHOOK_FORMAT": "teams"},
            "SIZEAGG_ALERT_WEBHOOK_FORMAT='teams' is not one of generic, slack, feishu, dingtalk, wecom",
        ),
        ({**SMTP, "SIZEAGG_SMTP_PORT": "smtp"}, "SIZEAGG_SMTP_PORT='smtp' is not a whole number"),
        ({**SMTP, "SIZEAGG_SMTP_PORT": "70000"}, "SIZEAGG_SMTP_PORT=70000 is not a TCP port (1-65535)"),
        (
            {"SIZEAGG_SMTP_HOST": "mail.example.com", "SIZEAGG_ALERT_FROM": "s@example.com"},
            "SIZEAGG_ALERT_TO is empty but SIZEAGG_SMTP_HOST is set: name at least one recipient",
        ),
        ({**SMTP, "SIZEAGG_ALERT_TO": " , "}, "SIZEAGG_ALERT_TO is empty but SIZEAGG_SMTP_HOST is set"),
        (
            {**SMTP, "SIZEAGG_ALERT_FROM": "s@example.com", "SIZEAGG_SMTP_SECURITY": "tls"},
            "SIZEAGG_SMTP_SECURITY='tls' is not one of starttls, ssl, none",
        ),
        ({**SMTP}, "SIZEAGG_ALERT_FROM is not set (and SIZEAGG_SMTP_USER is not an address to use instead)"),
        (
            {**SMTP, "SIZEAGG_ALERT_FROM": "s@example.com", "SIZEAGG_SMTP_PASSWORD": "pw-x"},
            "SIZEAGG_SMTP_PASSWORD is set but SIZEAGG_SMTP_USER is not",
        ),
        ({"SIZEAGG_ALERT_TO": "dba@example.com"}, "SIZEAGG_ALERT_TO is set but SIZEAGG_SMTP_HOST is not"),
        (
            {"SIZEAGG_ALERT_WEBHOOK_URL": "hooks.example.com/t0k3n"},
            "SIZEAGG_ALERT_WEBHOOK_URL is not an http:// or https:// URL",
        ),
        ({"SIZEAGG_DIGEST_AT": "9am"}, "SIZEAGG_DIGEST_AT='9am' is not a HH:MM time of day or off"),
        (
            {"SIZEAGG_FRESHNESS_DEADLINE": "off"},
            "SIZEAGG_FRESHNESS_DEADLINE='off' is not a HH:MM time of day",
        ),
        (
            {"SIZEAGG_GROWTH_ALERT_PERCENT": "0"},
            "SIZEAGG_GROWTH_ALERT_PERCENT='0' is not a whole number of at least 1",
        ),
    ],
)
def test_bad_settings_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    _set(monkeypatch, env)
    with pytest.raises(ValueError) as error:
        alerting()
    assert message in str(error.value)
    assert "pw-x" not in str(error.value) and "t0k3n" not in str(error.value)


BAD = {
    "SIZEAGG_ALERT_WEBHOOK_URL": "https://hooks.example.com/t0k3n",
    "SIZEAGG_ALERT_WEBHOOK_FORMAT": "teams",
}
EXPECTED = "SIZEAGG_ALERT_WEBHOOK_FORMAT='teams' is not one of generic, slack, feishu, dingtalk, wecom"


def _start(tmp_path: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """A command started with the bad setting (and no other SIZEAGG_ variable)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("SIZEAGG_")}
    env = {
        **base,
        **BAD,
        "SIZEAGG_DATABASE_URL": f"sqlite:///{tmp_path / 'app.db'}",
        "DAGSTER_HOME": str(tmp_path),
    }
    return subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_sizeagg_run_refuses_to_start(tmp_path: Path) -> None:
    """The CLI stops before it does anything; its last line names the variable.

    (Importing the package loads the definitions, so today a traceback comes first,
    as for SIZEAGG_START_DATE; issue 18 makes every such start-up error one line.)
    """
    result = _start(tmp_path, tmp_path, str(BIN / "sizeagg"), "run", "--date", "2026-03-17")
    assert result.returncode != 0
    assert EXPECTED in result.stderr.strip().splitlines()[-1]
    assert "t0k3n" not in result.stderr
    assert not (tmp_path / "app.db").exists()  # nothing ran


def test_the_code_location_refuses_to_load(tmp_path: Path) -> None:
    result = _start(tmp_path, ROOT, str(BIN / "dagster"), "definitions", "validate", "-w", "workspace.yaml")
    assert result.returncode != 0
    assert EXPECTED in result.stdout + result.stderr
    assert "t0k3n" not in result.stdout + result.stderr
