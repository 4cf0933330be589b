"""HTTPS front end for ``MockOrg``: a threaded HTTP/1.1 server on loopback.

HTTP/1.1 itself is h11's job (the sans-I/O protocol library httpx's stack is built on):
it parses requests, decodes ``Content-Length`` and ``Transfer-Encoding: chunked`` bodies,
frames responses (chunked when a streamed body has no length), knows a ``HEAD`` answer has
no body and tracks ``Expect: 100-continue``. This module only moves bytes between a TLS
socket and h11 and hands each complete request to ``MockOrg.handle``. Every request body
is read to its end before the answer goes out, so a kept-alive connection never carries
unread bytes into the next request.

``serve(org, tls_dir=…)`` starts it in a background thread and returns a
``RunningMockOrg`` (a context manager). TLS uses a throw-away CA from ``trustme`` whose
certificate is written to ``tls_dir/ca.pem`` only once the port accepts connections (via a
temporary file and ``os.replace``, so a poller never reads half a file); clients trust
exactly that file. ``main`` is the blocking entry point behind ``audit mock-org``.
"""

from __future__ import annotations

import email.utils
import logging
import os
import signal
import socket
import socketserver
import ssl
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from types import FrameType
from typing import Any, TextIO
from urllib.parse import parse_qsl, unquote, urlsplit

import h11
import trustme

from .faults import Faults, TruncatedBody
from .http import Headers, MockRequest, MockResponse
from .org import MockOrg

__all__ = ["serve", "main", "RunningMockOrg", "MockOrgServer", "MAX_BODY_BYTES"]

_log = logging.getLogger(__name__)
IDLE_TIMEOUT_S = 60.0
SERVER_HEADER = "MockSalesforce/1.0"
#: a larger request body is refused with 413 and the connection closed
MAX_BODY_BYTES = 32 * 1024 * 1024
_RECV_BYTES = 64 * 1024


class _ClientGone(Exception):
    """The client closed the connection or broke the protocol: stop serving it."""


class _Connection:
    """One kept-alive TLS connection: request after request until either side closes."""

    def __init__(self, sock: ssl.SSLSocket, server: MockOrgServer) -> None:
        self.sock = sock
        self.server = server
        self.h11 = h11.Connection(h11.SERVER)

    def serve(self) -> None:
        try:
            while True:
                request = self._read_request()
                if request is None:
                    return
                self._respond(request, self._answer(request))
                if self.h11.our_state is not h11.DONE or self.h11.their_state is not h11.DONE:
                    return  # Connection: close, an HTTP/1.0 client, or a refused body
                self.h11.start_next_cycle()
        except _ClientGone as exc:
            _log.debug("connection ends: %s", exc)
        except (OSError, ssl.SSLError) as exc:  # reset, broken pipe, idle timeout
            _log.debug("connection dropped: %s", exc)

    # ------------------------------------------------------------------ reading
    def _next_event(self) -> Any:
        """The next h11 event, receiving (and sending ``100 Continue``) as needed."""
        while True:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as exc:
                self._refuse(exc.error_status_hint, str(exc))
                raise _ClientGone(f"bad request: {exc}") from None
            if event is not h11.NEED_DATA:
                return event
            if self.h11.they_are_waiting_for_100_continue:
                self._send(h11.InformationalResponse(status_code=100, headers=[]))
            self.h11.receive_data(self.sock.recv(_RECV_BYTES))

    def _read_request(self) -> MockRequest | None:
        """The next complete request, body included; None once the client has closed."""
        event = self._next_event()
        if isinstance(event, h11.ConnectionClosed):
            return None
        if not isinstance(event, h11.Request):
            raise _ClientGone(f"unexpected {type(event).__name__}")
        body = bytearray()
        while True:
            part = self._next_event()
            if isinstance(part, h11.Data):
                body += part.data
                if len(body) > MAX_BODY_BYTES:
                    self._refuse(413, "request body too large")
                    raise _ClientGone("request body too large")
            elif isinstance(part, h11.EndOfMessage):
                break
            else:
                raise _ClientGone("connection closed mid-body")
        return self._mock_request(event, bytes(body))

    def _mock_request(self, event: h11.Request, body: bytes) -> MockRequest:
        target = event.target.decode("ascii", "replace")
        parts = urlsplit(target)
        headers = Headers(
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in event.headers.raw_items()
        )
        host = headers.get("Host") or f"{self.server.host}:{self.server.port}"
        return MockRequest(
            method=event.method.decode("ascii"),
            path=unquote(parts.path),
            query=dict(parse_qsl(parts.query, keep_blank_values=True)),
            headers=headers,
            body=body,
            base_url=f"https://{host}",
        )

    # ------------------------------------------------------------------ answering
    def _answer(self, request: MockRequest) -> MockResponse:
        try:
            return self.server.org.handle(request)
        except Exception:  # a bug in the mock must not kill the connection silently
            _log.exception("mock org failed on %s %s", request.method, request.path)
            return MockResponse(
                500,
                Headers({"Content-Type": "application/json"}),
                b'[{"message":"mock org error","errorCode":"UNKNOWN_EXCEPTION"}]',
            )

    def _respond(self, request: MockRequest, response: MockResponse) -> None:
        body = response.body
        headers = Headers(response.headers)
        headers.setdefault("Date", email.utils.formatdate(usegmt=True))
        headers.setdefault("Server", SERVER_HEADER)
        head_only = request.method == "HEAD"
        if isinstance(body, bytes) and not (head_only and "Content-Length" in headers):
            headers["Content-Length"] = str(len(body))
        if head_only and not isinstance(body, bytes):
            close = getattr(body, "close", None)
            if close is not None:
                close()  # a streamed body that is never sent: release its file
        start = self._event_bytes(_response_event(response.status, headers))
        if head_only:
            self.sock.sendall(start + self._event_bytes(h11.EndOfMessage()))
        elif isinstance(body, bytes):
            data = self._event_bytes(h11.Data(data=body)) if body else b""
            self.sock.sendall(start + data + self._event_bytes(h11.EndOfMessage()))
        else:
            self.sock.sendall(start)
            self._stream(body)

    def _stream(self, chunks: Iterator[bytes]) -> None:
        try:
            for chunk in chunks:
                if chunk:
                    self.sock.sendall(self._event_bytes(h11.Data(data=chunk)))
        except TruncatedBody:
            self._abort()
            raise _ClientGone("body cut off (fault injection)") from None
        self.sock.sendall(self._event_bytes(h11.EndOfMessage()))

    def _refuse(self, status: int, reason: str) -> None:
        """Answer a request we will not serve (when an answer can still be sent)."""
        if self.h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        body = f'[{{"message":"{reason}","errorCode":"BAD_REQUEST"}}]'.encode()
        headers = Headers({"Content-Type": "application/json", "Connection": "close"})
        headers["Content-Length"] = str(len(body))
        try:
            self.sock.sendall(
                self._event_bytes(_response_event(status, headers))
                + self._event_bytes(h11.Data(data=body))
                + self._event_bytes(h11.EndOfMessage())
            )
        except (h11.LocalProtocolError, OSError) as exc:
            _log.debug("could not send the %d answer: %s", status, exc)

    def _abort(self) -> None:
        """Drop the connection mid-body (no TLS close_notify), as a failing proxy would."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError as exc:
            _log.debug("abort: connection already gone: %s", exc)

    def _send(self, event: Any) -> None:
        self.sock.sendall(self._event_bytes(event))

    def _event_bytes(self, event: Any) -> bytes:
        return self.h11.send(event) or b""


def _response_event(status: int, headers: Headers) -> h11.Response:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = ""
    return h11.Response(status_code=status, headers=list(headers.items()), reason=reason)


class MockOrgServer(socketserver.ThreadingTCPServer):
    """A threading TCP server whose connections are TLS-wrapped and spoken to through h11,
    each in its own thread."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], org: MockOrg, context: ssl.SSLContext) -> None:
        self.org = org
        self.ssl_context = context
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, socketserver.BaseRequestHandler)
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
            _Connection(conn, self).serve()
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
