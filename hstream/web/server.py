"""The HTTP server behind the pages: the standard library's, on a thread of its own.

Read-only (GET and HEAD), and nothing without the token: a request with `?token=` gets it
checked, the cookie set (HttpOnly, SameSite=Strict) and a redirect to the same page without
it, so the token does not stay in the address bar or the browser history; a request with
neither token nor cookie gets 401, a wrong one 403. Pages carry no script, and a
Content-Security-Policy that would block any that got in.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from hstream.cluster.history import job_of_attempt
from hstream.web import auth, pages
from hstream.web.sources import Source

logger = logging.getLogger(__name__)

HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                               "img-src data:; frame-ancestors 'none'; form-action 'none'; "
                               "base-uri 'none'",
}
HTML = "text/html; charset=utf-8"
TEXT = "text/plain; charset=utf-8"

Response = tuple[int, str, str]  # status, content type, content


class WebServer:
    """The pages of one source, served on host:port (0: any free port) until `stop`."""

    def __init__(self, host: str, port: int, token: str, source: Source) -> None:
        self.host = host
        self.token = token
        self.source = source
        self.httpd = _bind(host, port)
        self.httpd.app = self  # type: ignore[attr-defined]
        self.port: int = self.httpd.server_address[1]
        self.cookie = auth.cookie_name(self.port)
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True,
                                        name="web")

    def start(self) -> WebServer:
        self._thread.start()
        logger.info("pages served on http://%s:%d/", self.host, self.port)
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def url(self, path: str = "/") -> str:
        return page_url(self.host, self.port, self.token, path)

    # -- routes --------------------------------------------------------------------------
    def route(self, path: str) -> Response:
        parts = [p for p in path.split("/") if p]
        now = time.time()
        if not parts:
            return 200, HTML, pages.jobs_page(self.source.summaries(), now, self.source.where)
        if parts == ["workers"]:
            return 200, HTML, pages.workers_page(self.source.workers(), job_of_attempt)
        if parts[0] == "job" and len(parts) in (2, 4, 5):
            return self._job(parts[1:], now)
        return _not_found("no such page")

    def _job(self, parts: list[str], now: float) -> Response:
        record = self.source.job(parts[0])
        if record is None:
            return _not_found(f"no such job: {parts[0]}")
        if len(parts) == 1:
            return 200, HTML, pages.job_page(
                record, now, lambda attempt: self.source.stderr(record.id, attempt))
        attempt = record.attempts.get(parts[2]) if parts[1] == "attempt" else None
        if attempt is None:
            return _not_found(f"no such attempt: {parts[2]}")
        stderr = self.source.stderr(record.id, attempt.id) if attempt.stderr else None
        if len(parts) == 3:
            return 200, HTML, pages.attempt_page(record, attempt, stderr, now)
        if parts[3] == "stderr":
            return 200, TEXT, stderr or ""
        return _not_found("no such page")


def page_url(host: str, port: int, token: str, path: str = "/") -> str:
    """The URL to print: the page, with the token that opens it."""
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}{quote(path)}?token={token}"


def _bind(host: str, port: int) -> ThreadingHTTPServer:
    """Bind host:port; a port in use falls back to any free one (the URL printed says which)."""
    try:
        server = ThreadingHTTPServer((host, port), _Handler)
    except OSError as e:
        if port == 0 or e.errno != errno.EADDRINUSE:
            raise
        logger.warning("web port %d is in use: serving the pages on another port", port)
        server = ThreadingHTTPServer((host, 0), _Handler)
    server.daemon_threads = True
    return server


def _not_found(text: str) -> Response:
    return 404, HTML, pages.message_page("Not found", text)


class _Handler(BaseHTTPRequestHandler):
    server_version = "hstream"
    sys_version = ""

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        self._serve(with_body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._serve(with_body=False)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        logger.debug("web %s: %s", self.address_string(), format % args)

    @property
    def app(self) -> WebServer:
        app: WebServer = self.server.app  # type: ignore[attr-defined]
        return app

    def _serve(self, with_body: bool) -> None:
        url = urlsplit(self.path)
        given = parse_qs(url.query).get("token")
        if given is not None:
            self._token(given[-1], url.path)
            return
        cookie = auth.cookie_value(self.headers.get("Cookie"), self.app.cookie)
        if cookie is None:
            self._send(401, HTML, pages.message_page(
                "Token needed", "Open the URL with ?token= that hstream printed."), with_body)
        elif not auth.matches(cookie, self.app.token):
            self._send(403, HTML, pages.message_page("Forbidden", "Wrong token."), with_body)
        else:
            self._send(*self._render(url.path), with_body=with_body)

    def _token(self, given: str, path: str) -> None:
        """A token in the URL: wrong is 403; right sets the cookie and drops it from the URL."""
        if not auth.matches(given, self.app.token):
            self._send(403, HTML, pages.message_page("Forbidden", "Wrong token."), True)
            return
        target = path if path.startswith("/") and not path.startswith("//") else "/"
        self.send_response(303)
        self.send_header("Location", quote(target, safe="/%"))
        self.send_header("Set-Cookie", auth.set_cookie(self.app.cookie, self.app.token))
        self.send_header("Content-Length", "0")
        for name, value in HEADERS.items():
            self.send_header(name, value)
        self.end_headers()

    def _render(self, path: str) -> Response:
        try:
            return self.app.route(path)
        except Exception:  # a page that fails to render is that request's 500, logged
            logger.exception("web: rendering %s failed", path)
            return 500, HTML, pages.message_page("Error", "This page failed; see the log.")

    def _send(self, status: int, ctype: str, content: str, with_body: bool) -> None:
        data = content.encode("utf-8", "replace")
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for name, value in HEADERS.items():
            self.send_header(name, value)
        self.end_headers()
        if with_body:
            self.wfile.write(data)
