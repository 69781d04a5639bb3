"""A real HTTP/1.1 server on 127.0.0.1 for download tests: scripted misbehaviour, ranges, a request log.

In a test::

    with LoopbackHTTPServer() as server:
        server.add("/img.bz2", data, mode="cut", cut_at=1000)
        download(server.url("/img.bz2"), dest)
        assert [r.range for r in server.requests("/img.bz2")] == [None, "bytes=1000-"]

From another process: ``python tests/harness/loopback_http.py DIR [--mode M ...]`` serves the files
of DIR, prints ``PORT <n>`` on stdout and runs until SIGTERM or SIGINT; ``GET /_log`` returns the
request log as JSON (a list of ``{"method", "path", "range", "status"}``).

Modes (``add(mode=...)``):

- ``ok``: the file, with ``Range: bytes=N-`` answered by 206 + ``Content-Range`` (416 past the end).
- ``cut``: the first response sends ``cut_at`` bytes of its body under the full Content-Length and
  closes the connection; later ones behave like ``ok``.
- ``truncated``: every response does what ``cut`` does to the first one.
- ``stall``: every response sends its headers and ``stall_after`` bytes, then goes quiet for
  ``stall_for`` seconds (or until the server stops) and closes.
- ``hang``: reads the request and never answers (until ``stall_for`` or the server stops).
- ``404``: 404 Not Found. ``status`` with ``status=N``: always that status.
- ``no-range``: like ``ok`` but ignoring Range (always 200 with the whole file).
- ``flaky500``: the first ``fail_times`` requests get 500 Internal Server Error, then ``ok``.

``ranges=False`` makes any mode ignore Range; ``max_range=N`` answers a range with at most N bytes
(a complete, valid 206 for less than was asked, as some CDNs do); ``send_length=False`` omits
Content-Length (the end of the body is then the end of the connection).
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import socket
import sys
import threading
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

MODES = ("ok", "cut", "truncated", "stall", "hang", "404", "status", "no-range", "flaky500")
LOG_PATH = "/_log"
_RANGE = re.compile(r"\s*bytes\s*=\s*(\d+)-(\d*)\s*$")


@dataclass(frozen=True)
class Request:
    """One request as the server saw it; ``status`` is None when it never answered."""

    method: str
    path: str
    range: str | None
    status: int | None


@dataclass
class Route:
    data: bytes
    mode: str = "ok"
    cut_at: int = 0
    stall_after: int = 0
    stall_for: float = 30.0
    fail_times: int = 1
    status: int = 404
    ranges: bool = True
    send_length: bool = True
    max_range: int | None = None
    hits: int = 0


class _HTTPServer(ThreadingHTTPServer):
    owner: LoopbackHTTPServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that time out or give up reset their connections: expected here, not worth a traceback.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so the client's connection reuse is exercised too
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.owner._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.owner._track(self.connection, add=False)

    def do_GET(self) -> None:
        self.server.owner._serve(self, head=False)

    def do_HEAD(self) -> None:
        self.server.owner._serve(self, head=True)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the request log is the record; keep test output clean


class LoopbackHTTPServer:
    """A threaded HTTP server on a free loopback port; per-path behaviours are added with :meth:`add`."""

    def __init__(self, root: Path | None = None, *, default: Route | None = None) -> None:
        """``root``: serve unregistered paths from files under it, behaving like ``default``."""
        self.root = root.resolve() if root is not None else None
        self._default = default or Route(b"")
        self._routes: dict[str, Route] = {}
        self._log: list[Request] = []
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self.port: int = self._httpd.server_address[1]
        self._thread: threading.Thread | None = None

    # -- life cycle --------------------------------------------------------------------------

    def start(self) -> LoopbackHTTPServer:
        if self._thread is None:
            # A short poll interval: stop() waits for one.
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, args=(0.05,), name="loopback-http", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; wakes stalled handlers and drops open connections so nothing hangs."""
        self._stopping.set()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._httpd.server_close()  # joins the handler threads

    def __enter__(self) -> LoopbackHTTPServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- configuration and inspection -----------------------------------------------------------

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def add(
        self,
        path: str,
        data: bytes,
        *,
        mode: str = "ok",
        cut_at: int = 0,
        stall_after: int = 0,
        stall_for: float = 30.0,
        fail_times: int = 1,
        status: int = 404,
        ranges: bool = True,
        send_length: bool = True,
        max_range: int | None = None,
    ) -> str:
        """Serve ``data`` at ``path`` with the given behaviour; returns the URL."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; one of {', '.join(MODES)}")
        route = Route(data, mode, cut_at, stall_after, stall_for, fail_times, status, ranges, send_length, max_range)
        with self._lock:
            self._routes[path] = route
        return self.url(path)

    def requests(self, path: str | None = None) -> list[Request]:
        """The requests received so far (for ``path``, or all), oldest first."""
        with self._lock:
            return [r for r in self._log if path is None or r.path == path]

    # -- serving -------------------------------------------------------------------------------

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    def _route(self, path: str) -> tuple[Route, int] | None:
        """The route for ``path`` and how many requests it had before this one."""
        with self._lock:
            route = self._routes.get(path)
            if route is None and self.root is not None:
                file = (self.root / unquote(path).lstrip("/")).resolve()
                if file.is_relative_to(self.root) and file.is_file():
                    d = self._default
                    route = Route(file.read_bytes(), d.mode, d.cut_at, d.stall_after, d.stall_for, d.fail_times)
                    route.status, route.ranges, route.send_length = d.status, d.ranges, d.send_length
                    self._routes[path] = route
            if route is None:
                return None
            route.hits += 1
            return route, route.hits - 1

    def _record(self, h: _Handler, path: str, status: int | None) -> None:
        with self._lock:
            self._log.append(Request(h.command, path, h.headers.get("Range"), status))

    def _serve(self, h: _Handler, *, head: bool) -> None:
        path = urlsplit(h.path).path
        if path == LOG_PATH:
            body = json.dumps([asdict(r) for r in self.requests()]).encode()
            self._respond(h, 200, {"Content-Type": "application/json", "Content-Length": str(len(body))}, body)
            return
        found = self._route(path)
        if found is None:
            self._record(h, path, 404)
            self._error(h, 404)
            return
        route, n = found
        mode = route.mode
        if mode == "hang":
            self._record(h, path, None)
            self._stopping.wait(route.stall_for)
            h.close_connection = True
            return
        if mode in ("404", "status") or (mode == "flaky500" and n < route.fail_times):
            status = 404 if mode == "404" else 500 if mode == "flaky500" else route.status
            self._record(h, path, status)
            self._error(h, status)
            return

        data, size = route.data, len(route.data)
        m = _RANGE.match(h.headers.get("Range") or "") if route.ranges and mode != "no-range" else None
        headers = {"Content-Type": "application/octet-stream"}
        if route.ranges and mode != "no-range":
            headers["Accept-Ranges"] = "bytes"
        if m is None:
            status, body = 200, data
        else:
            start = int(m[1])
            end = min(int(m[2]), size - 1) if m[2] else size - 1
            if route.max_range is not None:
                end = min(end, start + route.max_range - 1)
            if start >= size:
                self._record(h, path, 416)
                headers.update({"Content-Range": f"bytes */{size}", "Content-Length": "0"})
                self._respond(h, 416, headers, b"")
                return
            status, body = 206, data[start : end + 1]
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        if route.send_length:
            headers["Content-Length"] = str(len(body))
        else:
            headers["Connection"] = "close"
        self._record(h, path, status)
        if head:
            self._respond(h, status, headers, b"")
            return

        if mode == "truncated" or (mode == "cut" and n == 0):
            self._respond(h, status, headers, body[: route.cut_at], close=True)
        elif mode == "stall":
            self._respond(h, status, headers, body[: route.stall_after], close=True)
            self._stopping.wait(route.stall_for)
        else:
            self._respond(h, status, headers, body, close=not route.send_length)

    def _error(self, h: _Handler, status: int) -> None:
        body = f"{status} {h.responses.get(status, ('',))[0]}\n".encode()
        self._respond(h, status, {"Content-Type": "text/plain", "Content-Length": str(len(body))}, body)

    def _respond(self, h: _Handler, status: int, headers: dict[str, str], body: bytes, *, close: bool = False) -> None:
        try:
            h.send_response(status)
            for k, v in headers.items():
                h.send_header(k, v)
            h.end_headers()
            h.wfile.write(body)
            h.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            close = True  # the client gave up; nothing to tell it
        if close:
            h.close_connection = True


def _serve_dir(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Serve DIR on 127.0.0.1; prints 'PORT <n>'. GET /_log: request log.")
    p.add_argument("dir", type=Path)
    p.add_argument("--mode", default="ok", choices=MODES)
    p.add_argument("--cut-at", type=int, default=0)
    p.add_argument("--stall-after", type=int, default=0)
    p.add_argument("--fail-times", type=int, default=1)
    p.add_argument("--no-ranges", action="store_true")
    a = p.parse_args(argv)
    default = Route(b"", a.mode, cut_at=a.cut_at, stall_after=a.stall_after, fail_times=a.fail_times)
    default.ranges = not a.no_ranges
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    with LoopbackHTTPServer(a.dir, default=default) as server:
        print(f"PORT {server.port}", flush=True)
        while not done.wait(0.2):
            pass


if __name__ == "__main__":
    _serve_dir(sys.argv[1:])
