"""The playground's web server: a Starlette app that serves the page and one training session
per WebSocket, behind the session token.

Routes (every one needs the token, as ``?token=`` or the ``gradsight_token`` cookie that
``GET /?token=...`` sets; without it: 403 and one line of text, no page):

    GET /               the page (static/index.html)
    GET /static/...     its scripts, styles and message catalogues
    GET /api/health     {"status": "ok", "version": ..., "sessions": N, "lang": ...,
                         "limits": {...}}
    GET /api/i18n/LANG  the message catalogue of LANG (en when LANG has none)
    POST /api/upload    a CSV file of one's own (:mod:`.upload`), for ``configure``'s upload
    WS  /ws             one session: the messages of :mod:`.protocol`

A session's work (a burst of training steps, a descent run, building a data set) runs in a
worker thread, one call at a time per session, so the event loop keeps answering every other
tab and ``/api/health`` while networks train.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import json
import logging
import secrets
import time
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from anyio import CapacityLimiter, to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from .. import __version__
from ..errors import ExpressionError, GradsightError, UnknownNameError
from .descent import descent_message
from .limits import Limits
from .protocol import DEFAULT_CONFIG, ProtocolError, error_message, read_message, to_text
from .sessions import NetworkSession, SessionCounter
from .upload import Upload, UploadStore, upload_route
from .vanishing import VanishingSession

__all__ = ["COOKIE", "FRAME_SECONDS", "LANGUAGES", "STATIC", "make_app", "new_token"]

STATIC = Path(__file__).resolve().parent / "static"
LANGUAGES = ("en", "it", "es", "id")  # the articles' languages
COOKIE = "gradsight_token"
FRAME_SECONDS = 0.05  # 20 frames a second while playing
BURST_SECONDS = 0.03  # training time per frame at most (then the frame is drawn)
FORBIDDEN = ("403 forbidden: this playground needs the session token that `gradsight play` "
             "printed (open the URL it printed, with ?token=...)\n")
#: UnknownNameError.kind → the configure field that named it
_NAME_FIELDS = {"activation": "activation", "initialiser": "init", "optimizer": "optimizer",
                "loss": "loss", "dataset": "dataset", "bias initialiser": "bias_init"}
log = logging.getLogger("gradsight.play")


def new_token() -> str:
    """A fresh session token (as Jupyter's: random, in the URL printed once)."""
    return secrets.token_urlsafe(24)


# ---- the token -----------------------------------------------------------------------------
class TokenGate:
    """ASGI middleware: an HTTP request or WebSocket without the token gets 403."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app, self.token = app, token.encode()

    def allowed(self, scope: Scope) -> bool:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        given = [value for value in query.get("token", [])]
        for name, value in scope.get("headers", []):
            if name == b"cookie":
                cookie: SimpleCookie = SimpleCookie()
                try:
                    cookie.load(value.decode("latin-1"))
                except Exception:  # a malformed cookie header is no token  # noqa: BLE001
                    continue
                if COOKIE in cookie:
                    given.append(cookie[COOKIE].value)
        return any(secrets.compare_digest(text.encode(), self.token) for text in given)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self.allowed(scope):
            await self.app(scope, receive, send)
        elif scope["type"] == "http":
            await Response(FORBIDDEN, status_code=403, media_type="text/plain")(
                scope, receive, send)
        else:  # closing before accepting: the server answers the handshake with 403
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1008})


# ---- HTTP ----------------------------------------------------------------------------------
def _index(request: Request) -> Response:
    page = STATIC / "index.html"
    response: Response = (FileResponse(page) if page.is_file() else HTMLResponse(
        "<!doctype html><title>gradsight play</title><p>The page is not installed.</p>"))
    token = request.query_params.get("token")
    if token:  # the gate let it in: it is the token
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/")
    response.headers["Cache-Control"] = "no-store"
    return response


def _health(request: Request) -> Response:
    state = request.app.state
    return JSONResponse({"status": "ok", "version": __version__,
                         "sessions": state.sessions.open, "lang": state.lang,
                         "limits": dataclasses.asdict(state.limits)})


def catalogue(lang: str) -> dict[str, Any]:
    """The message catalogue of ``lang`` (static/i18n/LANG.json); English when ``lang`` is
    not one of :data:`LANGUAGES` or its file is missing or broken; {} without any."""
    for candidate in dict.fromkeys((lang if lang in LANGUAGES else "en", "en")):
        path = STATIC / "i18n" / f"{candidate}.json"
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(loaded, dict):
            return loaded
    return {}


def _i18n(request: Request) -> Response:
    lang = request.path_params["lang"]
    return JSONResponse(catalogue(lang), headers={
        "Content-Language": lang if lang in LANGUAGES else "en"})


# ---- the WebSocket session -----------------------------------------------------------------
class _Closed(Exception):
    """The socket went away while the session was sending."""


class Connection:
    """One socket's session: reads messages, trains in bursts while playing, sends frames."""

    NOTHING = object()

    def __init__(self, websocket: WebSocket, limits: Limits) -> None:
        self.websocket, self.limits = websocket, limits
        self.session: NetworkSession | None = None
        self.vanishing: VanishingSession | None = None  # the vanishing view's own network
        self.upload: Upload | None = None  # the uploaded CSV this socket trains on
        self.playing = False
        self.steps_per_frame = DEFAULT_CONFIG["steps_per_frame"]
        self.next_frame = 0.0
        self.inbox: asyncio.Queue[Any] = asyncio.Queue()

    async def send(self, message: dict[str, Any]) -> None:
        try:
            await self.websocket.send_text(to_text(message))
        except Exception as error:  # a closed socket: end the session  # noqa: BLE001
            raise _Closed from error

    async def _read(self) -> None:
        """Every message into the inbox; None when the socket closes."""
        try:
            while True:
                message = await self.websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                text = message.get("text")
                await self.inbox.put(text if text is not None else message.get("bytes", b""))
        except Exception:  # noqa: BLE001 - a broken socket ends the session like a close
            pass
        finally:
            await self.inbox.put(None)

    async def _next(self, wait: float | None) -> Any:
        if wait is None:
            return await self.inbox.get()
        try:
            return await asyncio.wait_for(self.inbox.get(), max(wait, 0.0))
        except asyncio.TimeoutError:
            return self.NOTHING

    async def serve(self) -> None:
        reader = asyncio.create_task(self._read())
        loop = asyncio.get_running_loop()
        try:
            while True:
                wait = self.next_frame - loop.time() if self.playing else None
                message = await self._next(wait)
                if message is None:
                    break
                if message is not self.NOTHING:
                    await self.handle(message)
                if self.playing and loop.time() >= self.next_frame:
                    started = loop.time()
                    await self.play_frame()
                    self.next_frame = started + FRAME_SECONDS
        except _Closed:
            pass
        finally:
            reader.cancel()
            self.session = self.vanishing = None  # the models and data go with the socket

    async def handle(self, text: str | bytes) -> None:
        """One message: checked, done, answered — or refused with an ``error`` message."""
        try:
            kind, fields = read_message(text, self.limits)
            await getattr(self, f"on_{kind}")(fields)
        except ProtocolError as error:
            await self.send(error_message(error.field, str(error)))
        except GradsightError as error:
            await self.send(error_message(_field_of(error), str(error)))
        except _Closed:
            raise
        except Exception as error:  # the server never dies from what a page sends
            log.exception("gradsight play: a message failed")
            await self.send(error_message(None, f"internal error ({type(error).__name__}): "
                                                f"{error}"))

    async def _network(self) -> NetworkSession:
        if self.session is None:
            self.session = await _in_worker(NetworkSession, dict(DEFAULT_CONFIG),
                                                    self.limits)
        return self.session

    # -- the messages --------------------------------------------------------------------
    async def on_descent(self, fields: dict[str, Any]) -> None:
        await self.send(await _in_worker(descent_message, fields))

    async def on_configure(self, fields: dict[str, Any]) -> None:
        data = None if fields["upload"] is None else self._upload(fields["upload"]).dataset
        session = await _in_worker(
            lambda: NetworkSession(fields, self.limits, data=data))
        self.session, self.playing = session, False
        self.steps_per_frame = fields["steps_per_frame"]
        await self.send(session.configured())
        await self.send(await _in_worker(session.frame))

    def _upload(self, upload_id: str) -> Upload:
        """The uploaded CSV this socket claimed (it owns it until it closes)."""
        mine = self.upload
        if mine is None or mine.id != upload_id:
            mine = self.websocket.app.state.uploads.take(upload_id)
            if mine is None:
                raise ProtocolError("upload", f"unknown upload {upload_id[:64]!r} (an upload "
                                              "trains one tab); upload the CSV file again")
            self.upload = mine
        return mine

    async def on_play(self, fields: dict[str, Any]) -> None:
        session = await self._network()
        if session.diverged or session.stopped:
            raise ProtocolError(None, f"{session.diverged or session.stopped}; reset or "
                                      "configure to train again")
        self.playing = True
        self.next_frame = asyncio.get_running_loop().time()

    async def on_pause(self, fields: dict[str, Any]) -> None:
        self.playing = False
        session = await self._network()
        await self.send(await _in_worker(session.frame))

    async def on_step(self, fields: dict[str, Any]) -> None:
        session = await self._network()
        self.playing = False
        count = fields["count"]

        def steps() -> dict[str, Any]:
            for _ in range(count):
                if not session.step():
                    break
            return session.frame()

        await self.send(await _in_worker(steps))

    async def on_reset(self, fields: dict[str, Any]) -> None:
        session = await self._network()
        self.playing = False
        await _in_worker(session.reset)
        await self.send(await _in_worker(session.frame))

    async def on_set(self, fields: dict[str, Any]) -> None:
        session = await self._network()
        if "lr" in fields:
            session.set_lr(fields["lr"])
        if "steps_per_frame" in fields:
            self.steps_per_frame = session.config["steps_per_frame"] = fields["steps_per_frame"]
        await self.send({"type": "set", "lr": session.optimizer.lr,
                         "steps_per_frame": self.steps_per_frame})

    async def on_unit(self, fields: dict[str, Any]) -> None:
        session = await self._network()
        await self.send(await _in_worker(session.unit, fields["layer"],
                                                 fields["index"]))

    async def on_weight(self, fields: dict[str, Any]) -> None:
        session = await self._network()
        await self.send(await _in_worker(
            session.weight, fields["layer"], fields["row"], fields["col"], fields["sample"]))

    async def on_vanishing(self, fields: dict[str, Any]) -> None:
        self.vanishing = await _in_worker(VanishingSession, fields, self.limits)
        await self.send(await _in_worker(self.vanishing.message))

    async def on_vanishing_step(self, fields: dict[str, Any]) -> None:
        if self.vanishing is None:
            raise ProtocolError(None, "send a vanishing message (the network) before "
                                      "vanishing_step")
        await self.send(await _in_worker(self.vanishing.advance, fields["count"]))

    async def play_frame(self) -> None:
        session = self.session
        assert session is not None  # play made it
        steps = self.steps_per_frame

        def burst() -> dict[str, Any]:
            session.burst(steps, BURST_SECONDS)
            return session.playing_frame()

        try:
            frame = await _in_worker(burst)
        except Exception as error:  # a frame that fails stops the play, not the socket
            log.exception("gradsight play: a frame failed")
            self.playing = False
            await self.send(error_message(None, f"training stopped: internal error "
                                                f"({type(error).__name__}): {error}"))
            return
        if frame["diverged"] or frame["stopped"]:
            self.playing = False
        await self.send(frame)


def _field_of(error: GradsightError) -> str | None:
    """The field a library error is about (shown beside it on the page)."""
    if isinstance(error, ExpressionError):
        return "expression"
    if isinstance(error, UnknownNameError):
        return _NAME_FIELDS.get(error.kind)
    if str(error).startswith("x0") or " x0 " in str(error):
        return "x0"
    return None


async def _socket(websocket: WebSocket) -> None:
    state = websocket.app.state
    await websocket.accept()
    if not state.sessions.take():
        await websocket.send_text(to_text(error_message(
            None, f"too many open sessions: the limit is {state.limits.max_sessions}; close "
                  "another playground tab and reload")))
        await websocket.close(code=1013)  # try again later
        return
    started = time.perf_counter()
    try:
        await Connection(websocket, state.limits).serve()
    finally:
        state.sessions.give_back()
        log.debug("session closed after %.1f s", time.perf_counter() - started)
        if state.sessions.open == 0:
            _give_memory_back()


#: the threads every session's computations share: as many as the cores. With anyio's
#: default pool (up to 40 threads) 20 playing sessions ran in 20 threads, which competed
#: with the event loop and each kept its own BLAS buffers after the sessions closed
WORKERS = 2
_LIMITER: list[Any] = []


async def _in_worker(function: Any, *args: Any) -> Any:
    """``function(*args)`` in one of the :data:`WORKERS` threads shared by all sessions."""
    if not _LIMITER:
        _LIMITER.append(CapacityLimiter(WORKERS))
    return await to_thread.run_sync(function, *args, limiter=_LIMITER[0])


def _libc() -> Any:
    """glibc, or None (another C library, or none to load)."""
    import ctypes  # late: only on glibc, at the start and when the last session closes
    import ctypes.util  # late: as above

    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name is not None else None
    except OSError:
        return None


def _few_arenas() -> None:
    """Ask glibc for 2 malloc arenas instead of 8 per core: the sessions train in worker
    threads, and each thread's arena keeps its freed memory to itself."""
    libc = _libc()
    mallopt = getattr(libc, "mallopt", None) if libc is not None else None
    if mallopt is not None:
        mallopt(-8, 2)  # M_ARENA_MAX


def _give_memory_back() -> None:
    """When the last session closes, ask the C allocator to return the freed pages (glibc's
    ``malloc_trim``): the sessions' NumPy buffers are freed, but glibc keeps the memory for
    reuse, so the server's resident size would stay at its peak. Elsewhere: nothing."""
    gc.collect()
    libc = _libc()
    trim = getattr(libc, "malloc_trim", None) if libc is not None else None
    if trim is not None:  # not glibc: the memory stays with the process
        trim(0)


def make_app(token: str, lang: str = "en", limits: Limits | None = None) -> Starlette:
    """The playground's ASGI app, answering only requests that carry ``token``."""
    limits = limits or Limits()
    _few_arenas()
    app = Starlette(routes=[
        Route("/", _index),
        Route("/api/health", _health),
        Route("/api/i18n/{lang}", _i18n),
        Route("/api/upload", upload_route, methods=["POST"]),
        WebSocketRoute("/ws", _socket),
        Mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static"),
    ])
    app.state.limits = limits
    app.state.lang = lang if lang in LANGUAGES else "en"
    app.state.sessions = SessionCounter(limits.max_sessions)
    app.state.uploads = UploadStore()
    app.add_middleware(TokenGate, token=token)
    return app
