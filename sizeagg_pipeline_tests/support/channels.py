"""Real alert channels on loopback: an SMTP server (aiosmtpd) and an HTTP webhook server.

Both run in the test process, in threads, on free ports, and keep what they received,
so a test asserts on the messages a person would get. The SMTP server can refuse
every message (`refuse=True`), require STARTTLS with a self-signed certificate (the
test points `SSL_CERT_FILE` at it) and a login; the webhook answers with the status
codes it is given, in turn, then 200.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import ipaddress
import json
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sizeagg_pipeline_tests.support.dagster_processes import free_port

HOST = "127.0.0.1"


@dataclass
class SmtpServer:
    port: int
    refuse: bool = False
    messages: list[EmailMessage] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)
    attempts: int = 0  # DATA commands seen, refused or not

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.attempts += 1
        if self.refuse:
            return "554 5.7.1 Message refused by the test server"
        content = envelope.original_content or b""
        message = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        return "250 OK"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if isinstance(data, LoginPassword):
            self.logins.append((data.login.decode(), data.password.decode()))
            return AuthResult(success=True)
        return AuthResult(success=False, handled=False)

    def env(self, recipients: str = "dba@example.com", security: str = "none") -> dict[str, str]:
        return {
            "SIZEAGG_SMTP_HOST": HOST,
            "SIZEAGG_SMTP_PORT": str(self.port),
            "SIZEAGG_SMTP_SECURITY": security,
            "SIZEAGG_ALERT_FROM": "sizeagg@example.com",
            "SIZEAGG_ALERT_TO": recipients,
        }

    def subjects(self) -> list[str]:
        return [" ".join(str(m["Subject"]).split()) for m in self.messages]  # unfolded


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (PEM files)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST))]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@contextmanager
def smtp_server(*, refuse: bool = False, tls: tuple[Path, Path] | None = None) -> Iterator[SmtpServer]:
    """An SMTP server on a free loopback port; with `tls`, STARTTLS and a login are required."""
    server = SmtpServer(port=free_port(), refuse=refuse)
    options: dict[str, Any] = {}
    if tls is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*tls)
        options = {
            "tls_context": context,
            "require_starttls": True,
            "authenticator": server.authenticate,
            "auth_required": True,
        }
    controller = Controller(server, hostname=HOST, port=server.port, **options)
    controller.start()
    try:
        yield server
    finally:
        controller.stop()


@dataclass
class WebhookServer:
    port: int
    statuses: list[int] = field(default_factory=list)  # answers still to give before 200s
    requests: list[dict[str, Any]] = field(default_factory=list)  # every body received
    delivered: list[dict[str, Any]] = field(default_factory=list)  # bodies answered 200

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/hook/secret-token-123"

    def env(self, form: str = "generic") -> dict[str, str]:
        return {"SIZEAGG_ALERT_WEBHOOK_URL": self.url, "SIZEAGG_ALERT_WEBHOOK_FORMAT": form}


@contextmanager
def webhook_server(statuses: list[int] | None = None) -> Iterator[WebhookServer]:
    """An HTTP server on a free loopback port that records every POSTed JSON body."""
    hook = WebhookServer(port=free_port(), statuses=list(statuses or []))
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with lock:
                hook.requests.append(body)
                status = hook.statuses.pop(0) if hook.statuses else 200
                if status == 200:
                    hook.delivered.append(body)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"errcode": 0, "errmsg": "ok"}' if status == 200 else b'{"error": "test"}')

        def log_message(self, format: str, *args: Any) -> None:  # keep pytest's output clean
            pass

    server = ThreadingHTTPServer((HOST, hook.port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
