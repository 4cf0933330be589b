"""HTTPS front end for ``MockOrg``: a threaded HTTP/1.1 server on loopback.

``serve(org, tls_dir=…)`` starts it in a background thread and returns a
``RunningMockOrg`` (a context manager). TLS uses a throw-away CA from ``trustme`` whose
certificate is written to ``tls_dir/ca.pem`` only once the port accepts connections (via a
temporary file and ``os.replace``, so a poller never reads half a file); clients trust
exactly that file. ``main`` is the blocking entry point behind ``audit mock-org``.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import ssl
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any, TextIO
from urllib.parse import parse_qsl, unquote, urlsplit

import trustme

from .faults import Faults, TruncatedBody
from .http import Headers, MockRequest, MockResponse
from .org import MockOrg

__all__ = ["serve", "main", "RunningMockOrg", "MockOrgServer"]

_log = logging.getLogger(__name__)
IDLE_TIMEOUT_S = 60.0


class _Handler(BaseHTTPRequestHandler):
    """Turns each HTTP request into a ``MockRequest`` and writes the ``MockResponse``."""

    protocol_version = "HTTP/1.1"
    server_version = "MockSalesforce/1.0"
    sys_version = ""
    timeout = IDLE_TIMEOUT_S
    server: MockOrgServer

    def log_message(self, format: str, *args: Any) -> None:
        _log.debug("%s - %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _dispatch(self) -> None:
        request = self._read_request()
        try:
            response = self.server.org.handle(request)
        except Exception:  # a bug in the mock must not kill the connection silently
            _log.exception("mock org failed on %s %s", request.method, request.path)
            response = MockResponse(
                500,
                Headers({"Content-Type": "application/json"}),
                b'[{"message":"mock org error","errorCode":"UNKNOWN_EXCEPTION"}]',
            )
        self._write_response(response)

    def _read_request(self) -> MockRequest:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        host = self.headers.get("Host") or f"{self.server.host}:{self.server.port}"
        return MockRequest(
            method=self.command,
            path=unquote(parts.path),
            query=dict(parse_qsl(parts.query, keep_blank_values=True)),
            headers=Headers(self.headers.items()),
            body=body,
            base_url=f"https://{host}",
        )

    def _write_response(self, response: MockResponse) -> None:
        self.send_response(response.status)
        body = response.body
        headers = Headers(response.headers)
        if isinstance(body, bytes):
            headers["Content-Length"] = str(len(body))
        chunked = not isinstance(body, bytes) and "Content-Length" not in headers
        if chunked:
            headers["Transfer-Encoding"] = "chunked"
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if isinstance(body, bytes):
            self.wfile.write(body)
            return
        self._stream(body, chunked)

    def _stream(self, chunks: Iterator[bytes], chunked: bool) -> None:
        try:
            for chunk in chunks:
                if chunk:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
        except TruncatedBody:
            self._abort()

    def _abort(self) -> None:
        """Drop the connection mid-body (no TLS close_notify), as a failing proxy would."""
        self.close_connection = True
        self.wfile.flush()
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError as exc:
            _log.debug("abort: connection already gone: %s", exc)


class MockOrgServer(ThreadingHTTPServer):
    """``ThreadingHTTPServer`` whose connections are TLS-wrapped in their own thread."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], org: MockOrg, context: ssl.SSLContext) -> None:
        self.org = org
        self.ssl_context = context
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)
        host = self.server_address[0]  # a str from getsockname(); the stub also admits bytes
        self.host: str = host if isinstance(host, str) else bytes(host).decode()
        self.port: int = self.server_address[1]

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(IDLE_TIMEOUT_S)
        # a streamed body goes out in small writes (chunk size, data, trailer): without
        # NODELAY, Nagle meets the client's delayed ACK and every download stalls ~40 ms
        request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            conn = self.ssl_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:  # client distrusts us or went away
            _log.debug("TLS handshake with %s failed: %s", client_address, exc)
            return
        with self._connections_lock:
            self._connections.add(conn)
        try:
            super().finish_request(conn, client_address)  # instantiates RequestHandlerClass
        finally:
            with self._connections_lock:
                self._connections.discard(conn)
            conn.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        _log.debug("connection from %s ended with an error", client_address, exc_info=True)

    def close_connections(self) -> None:
        """Shut down every open keep-alive connection (their threads then exit)."""
        with self._connections_lock:
            conns = list(self._connections)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError as exc:
                _log.debug("closing connection: %s", exc)


@dataclass
class RunningMockOrg:
    """A mock org being served; stop it with ``stop()`` or by leaving the ``with`` block."""

    org: MockOrg
    url: str
    host: str
    port: int
    ca_pem: Path
    _server: MockOrgServer = field(repr=False)
    _thread: threading.Thread = field(repr=False)
    _stopped: bool = field(default=False, repr=False)

    def stop(self) -> None:
        """Stop serving, close connections and remove ``ca.pem``. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        self._server.shutdown()
        self._server.close_connections()
        self._server.server_close()
        self._thread.join(timeout=5)
        self.ca_pem.unlink(missing_ok=True)

    def __enter__(self) -> RunningMockOrg:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _write_atomically(path: Path, data: bytes) -> None:
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temp.write_bytes(data)
    os.replace(temp, path)


def serve(
    org: MockOrg, *, host: str = "127.0.0.1", port: int = 0, tls_dir: str | Path
) -> RunningMockOrg:
    """Serve ``org`` over HTTPS in a background thread.

    ``port=0`` picks a free port. ``tls_dir`` is created if needed; ``tls_dir/ca.pem``
    (the CA to trust) appears once the port accepts connections. ``OSError`` if the port
    cannot be bound.
    """
    tls_path = Path(tls_dir)
    tls_path.mkdir(parents=True, exist_ok=True)
    ca_pem = tls_path / "ca.pem"
    ca_pem.unlink(missing_ok=True)
    authority = trustme.CA(organization_name="awu-audit mock org")
    leaf = authority.issue_cert("127.0.0.1", "localhost", "::1")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    leaf.configure_cert(context)
    server = MockOrgServer((host, port), org, context)
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        name=f"mock-org-{server.port}",
        daemon=True,
    )
    thread.start()
    _write_atomically(ca_pem, authority.cert_pem.bytes())
    url_host = f"[{host}]" if ":" in host else host
    return RunningMockOrg(
        org=org,
        url=f"https://{url_host}:{server.port}",
        host=host,
        port=server.port,
        ca_pem=ca_pem,
        _server=server,
        _thread=thread,
    )


def main(
    data_dir: str | Path,
    port: int,
    tls_dir: str | Path,
    faults_spec: str | None = None,
    *,
    host: str = "127.0.0.1",
    page_size: int = 2000,
    out: TextIO | None = None,
) -> int:
    """Serve a snapshot until Ctrl-C / SIGTERM; returns the exit code (0).

    ``ValueError`` (one line, nothing printed yet) for a bad snapshot, fault spec or port.
    """
    faults = Faults.parse(faults_spec)
    org = MockOrg.from_snapshot(data_dir, page_size=page_size, faults=faults)
    stop = threading.Event()
    previous = _install_stop_handlers(stop)
    try:
        try:
            running = serve(org, host=host, port=port, tls_dir=tls_dir)
        except OSError as exc:
            raise ValueError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None
        with running:
            print(
                f"mock org serving {data_dir} at {running.url} (CA: {running.ca_pem})",
                file=out or sys.stdout,
                flush=True,
            )
            while not stop.wait(0.5):
                continue
    finally:
        _restore_handlers(previous)
    return 0


def _install_stop_handlers(stop: threading.Event) -> dict[int, Any]:
    """Make SIGINT/SIGTERM set ``stop`` (only possible from the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous: dict[int, Any] = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.signal(signum, _on_signal)
    return previous


def _restore_handlers(previous: dict[int, Any]) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)


def _cli(argv: list[str]) -> int:
    """``DATA_DIR PORT TLS_DIR [FAULTS]`` command line (exit 2 with one line on bad input)."""
    if len(argv) not in (3, 4):
        print("usage: mock-org DATA_DIR PORT TLS_DIR [FAULTS]", file=sys.stderr)
        return 2
    try:
        return main(argv[0], int(argv[1]), argv[2], argv[3] if len(argv) == 4 else None)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(_cli(sys.argv[1:]))
