"""The Upstash tier's transport over TLS (Upstash is https:// only; the REST test server is
plain http), and the stored text form of values.

A local HTTPS server with a self-signed certificate for 127.0.0.1 (made here with
`cryptography`), trusted through SSL_CERT_FILE, which httpx reads when the tier builds its
TLS context: the handshake is part of connecting, so its time is added to the request's
deadline, and a request whose deadline has passed fails as httpx's own timeout.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from llmcache_upstash._deadline import (
    ASYNC_DEADLINE,
    SYNC_DEADLINE,
    async_transport,
    sync_transport,
)
from llmcache_upstash._stored import TEXT_MARKER, from_text, to_text


def write_self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class _Answer(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        answer = b'{"result": "' + body + b'"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def https_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An HTTPS echo server on 127.0.0.1 whose certificate httpx trusts."""
    cert, key = write_self_signed_certificate(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
    server.daemon_threads = True
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_tls_without_a_deadline(https_url: str) -> None:
    assert SYNC_DEADLINE.at == 0.0
    with httpx.Client(transport=sync_transport()) as client:
        answer = client.post(https_url, content=b"plain")
    assert answer.json() == {"result": "plain"}


def test_tls_handshake_time_is_added_to_the_deadline(https_url: str) -> None:
    set_at = time.monotonic() + 30
    SYNC_DEADLINE.at = set_at
    try:
        with httpx.Client(transport=sync_transport()) as client:
            answer = client.post(https_url, content=b"sync")
            extended = SYNC_DEADLINE.at
    finally:
        SYNC_DEADLINE.at = 0.0
    assert answer.json() == {"result": "sync"}
    assert extended > set_at  # TCP connect and TLS handshake were not the request's time


def test_a_request_past_its_deadline_is_a_timeout(https_url: str) -> None:
    SYNC_DEADLINE.at = time.monotonic() - 1.0
    try:
        with (
            httpx.Client(transport=sync_transport()) as client,
            pytest.raises(httpx.TimeoutException, match="deadline passed"),
        ):
            client.post(https_url, content=b"late")
    finally:
        SYNC_DEADLINE.at = 0.0


async def test_async_tls_handshake_time_is_added_to_the_deadline(https_url: str) -> None:
    set_at = time.monotonic() + 30
    token = ASYNC_DEADLINE.set(set_at)
    try:
        async with httpx.AsyncClient(transport=async_transport()) as client:
            answer = await client.post(https_url, content=b"async")
            extended = ASYNC_DEADLINE.get()
    finally:
        ASYNC_DEADLINE.reset(token)
    assert answer.json() == {"result": "async"}
    assert extended > set_at


async def test_an_async_request_past_its_deadline_is_a_timeout(https_url: str) -> None:
    token = ASYNC_DEADLINE.set(time.monotonic() - 1.0)
    try:
        async with httpx.AsyncClient(transport=async_transport()) as client:
            with pytest.raises(httpx.TimeoutException, match="deadline passed"):
                await client.post(https_url, content=b"late")
    finally:
        ASYNC_DEADLINE.reset(token)


@pytest.mark.parametrize("value", [b"", b"\x00\xff bytes", "é".encode()])
def test_stored_text_round_trips(value: bytes) -> None:
    assert from_text(to_text(value)) == value


def test_damaged_stored_text_is_returned_as_is_for_the_mac_check_to_refuse() -> None:
    damaged = TEXT_MARKER + "not base64!"
    assert from_text(damaged) == damaged.encode()


def test_text_written_by_another_client_is_its_bytes() -> None:
    assert from_text("written by redis-cli") == b"written by redis-cli"
