"""What every request to the service passes before anything reads its body.

FastAPI parses a form before its dependencies run, so a token checked there came after a whole
upload had been spooled to disk. :class:`RequestGuard` is plain ASGI middleware that looks at
the headers alone: the ``Host`` header must name this server (DNS rebinding), an API call from
another site's page is refused (``Origin``, ``Sec-Fetch-Site``), and the token, when set, must
come with every API call (``Authorization: Bearer``). The body is then counted as it arrives,
whatever its transfer encoding, and refused at the limit (413) or when it stalls (408), the
connection closed either way so that the rest is never read.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import json
import secrets
from collections.abc import Iterable
from typing import Any

#: Bytes a multipart form adds around the image (boundaries, headers, the other fields).
FORM_OVERHEAD = 64 * 1024
#: Host names a loopback server answers to besides IP addresses (see :func:`allowed_hosts`).
LOOPBACK_NAMES = ("localhost",)
#: API paths open without a token: the API's own reference holds no data.
_OPEN_API_PATHS = frozenset({"/api/docs", "/api/docs/oauth2-redirect", "/api/openapi.json"})
#: ``Sec-Fetch-Site`` values of requests from the page itself, or typed into the address bar.
_SAME_SITE = frozenset({b"same-origin", b"none"})


def allowed_hosts(bound: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """The names a ``Host`` header may give besides an IP address: ``localhost`` when the
    server is bound to the loopback or every address, the bound name, and ``extra``.

    An IP address is always accepted: a browser sends the address it connected to. A name is
    what DNS rebinding abuses (a page's own name made to resolve to this server), so only names
    the server was told of pass."""
    names = {_host_name(n) for n in extra} | {_host_name(bound)}
    if bound in ("", "0.0.0.0", "::", "localhost") or _is_loopback(bound):
        names.update(LOOPBACK_NAMES)
    return frozenset(n for n in names if n)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _host_name(host: str) -> str:
    """The name or address of a ``Host`` value, lower case, without port or brackets."""
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[1:end] if end > 0 else ""
    if host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class RequestGuard:
    """Plain ASGI middleware run before anything reads a request's body (see the module
    docstring): the Host, cross-site and token checks, then the body counted as it arrives.
    Its per-request work is a pass over the headers, a set lookup and a compare."""

    def __init__(self, app: Any, token: str | None, hosts: frozenset[str], body_bytes: int,
                 body_seconds: float) -> None:
        self.app = app
        self.token = None if token is None else token.encode("utf-8")
        self.body_bytes = body_bytes
        self.body_seconds = body_seconds
        self.host_ok = functools.lru_cache(maxsize=256)(
            lambda value: (lambda name: name in hosts or _is_ip(name))(
                _host_name(value.decode("latin-1"))))

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        host = origin = site = authorization = length = chunked = None
        for name, value in scope["headers"]:
            if name == b"host":
                host = value
            elif name == b"origin":
                origin = value
            elif name == b"sec-fetch-site":
                site = value
            elif name == b"authorization":
                authorization = value
            elif name == b"content-length":
                length = value
            elif name == b"transfer-encoding":
                chunked = value
        path = scope["path"]
        if host is not None and not self.host_ok(host):
            shown = host.decode("latin-1")
            return await _refuse(send, 400, f"Host {shown}: not a name this server answers "
                                            f"to (add {_host_name(shown)} to its allowed hosts "
                                            f"if it is)")
        api = path.startswith("/api/") and path not in _OPEN_API_PATHS
        if api and ((site is not None and site not in _SAME_SITE) or (
                site is None and origin is not None
                and origin.partition(b"://")[2].lower() != (host or b"").lower())):
            return await _refuse(send, 403, "a request from another site's page is refused")
        if api and self.token is not None and not self._authorised(authorization):
            return await _refuse(send, 401, "this server needs its token: Authorization: "
                                            "Bearer <token>",
                                 [(b"www-authenticate", b"Bearer")])
        if length is not None and (not length.isdigit() or int(length) > self.body_bytes):
            return await _refuse(send, 413, f"request: larger than the limit of "
                                            f"{self.body_bytes - FORM_OVERHEAD} bytes")
        if chunked is None and length in (None, b"0"):
            return await self.app(scope, receive, send)  # no body to guard
        body = _GuardedBody(receive, send, self.body_bytes,
                            asyncio.get_running_loop().time() + self.body_seconds)
        await self.app(scope, body.receive, body.send)

    def _authorised(self, given: bytes | None) -> bool:
        scheme, _, value = (given or b"").partition(b" ")
        return scheme.lower() == b"bearer" and secrets.compare_digest(value.strip(), self.token)


class _GuardedBody:
    """A request's ``receive`` counted and timed: past the limit, or past the deadline, the
    refusal is sent here, the app is told the client left, and what it sends is dropped."""

    __slots__ = ("_receive", "_send", "_limit", "_deadline", "_count", "_done", "_started",
                 "_refused")

    def __init__(self, receive: Any, send: Any, limit: int, deadline: float) -> None:
        self._receive, self._send, self._limit, self._deadline = receive, send, limit, deadline
        self._count = 0
        self._done = self._started = self._refused = False

    async def receive(self) -> dict:
        if self._done:  # the body is in: later calls wait for a disconnect
            return await self._receive()
        if self._refused:
            return {"type": "http.disconnect"}
        try:
            async with asyncio.timeout_at(self._deadline):
                message = await self._receive()
        except TimeoutError:
            return await self._refuse(408, "request: the upload stalled or was too slow "
                                           "(its body did not arrive in time)")
        if message["type"] == "http.request":
            self._count += len(message.get("body", b""))
            if self._count > self._limit:
                return await self._refuse(413, f"request: larger than the limit of "
                                               f"{self._limit - FORM_OVERHEAD} bytes")
            self._done = not message.get("more_body", False)
        return message

    async def _refuse(self, status: int, detail: str) -> dict:
        self._refused = True
        if not self._started:
            self._started = True
            await _refuse(self._send, status, detail)
        return {"type": "http.disconnect"}

    async def send(self, message: dict) -> None:
        if self._refused:
            return
        if message["type"] == "http.response.start":
            self._started = True
        await self._send(message)


async def _refuse(send: Any, status: int, detail: str,
                  headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """A JSON error sent from the middleware; the connection is closed after it, so that a body
    the client may still be sending is never read."""
    body = json.dumps({"detail": detail}).encode("utf-8")
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


#: Seconds a request's line and headers may take to arrive once a connection is open (or its
#: previous answer is sent): a browser sends them in one packet.
DEFAULT_HEAD_SECONDS = 10.0


def head_timed_protocol(seconds: float = DEFAULT_HEAD_SECONDS) -> type:
    """uvicorn's HTTP/1.1 protocol (``uvicorn.run(http=...)``), closing a connection whose
    request head has not arrived within ``seconds``.

    uvicorn closes a connection idle between requests (its keep-alive timeout), but not one
    that has sent part of a request line or of its headers: such a connection stayed open for
    good, and each counted towards the connection limit (``limit_concurrency``), so a few
    dozen sockets that sent a byte kept every other client out. :class:`RequestGuard` sees a
    request only once its head is in, so this is the head's guard, and it holds the timer per
    connection, armed when it opens and after each answer, disarmed when a head is complete.
    """
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeadTimedH11Protocol(H11Protocol):
        _head_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm_head_timer()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._head_timer is not None and self.conn.their_state is not h11.IDLE:
                self._head_timer.cancel()  # a whole head is in: the guard takes over
                self._head_timer = None

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm_head_timer()  # the next request's head, on a kept-alive connection

        def connection_lost(self, exc: Exception | None) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None
            super().connection_lost(exc)

        def _arm_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
            self._head_timer = self.loop.call_later(seconds, self._head_timed_out)

        def _head_timed_out(self) -> None:
            self._head_timer = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.close()  # no answer: the client never asked a whole question

    return HeadTimedH11Protocol
