"""Starting the playground: a uvicorn server on a socket bound first (so that port 0 is a
known free port before the URL is printed), in the foreground for ``gradsight play`` or in a
thread for a notebook, a test or a benchmark.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
import webbrowser
from typing import Any

import uvicorn

from ..errors import GradsightError, InvalidValueError
from .limits import Limits
from .server import LANGUAGES, make_app, new_token

__all__ = ["LOCAL_HOSTS", "PlayServer", "host_warning", "in_notebook", "play"]

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
WS_MAX_BYTES = 1024 * 1024  # the transport's cap; the protocol refuses > 64 KB in a message


def host_warning(host: str) -> str | None:
    """The warning for a host other than this machine's loopback, else None."""
    if host in LOCAL_HOSTS:
        return None
    return (f"warning: --host {host} makes the playground reachable from other machines; "
            "anyone with the URL (and its token) can train networks on this computer")


class PlayServer:
    """A playground server on ``host:port`` (0: a free port), with its own token."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, lang: str = "en",
                 limits: Limits | None = None, token: str | None = None) -> None:
        if lang not in LANGUAGES:
            raise InvalidValueError(f"lang must be one of {', '.join(LANGUAGES)}, got {lang!r}")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise InvalidValueError(f"port must be a whole number in [0, 65535], got {port!r}")
        self.host, self.lang = host, lang
        self.token = token or new_token()
        self.app = make_app(self.token, lang, limits)
        self.socket = _bind(host, port)
        self.port = int(self.socket.getsockname()[1])
        # no per-message deflate: on loopback, compressing every frame costs more than it saves
        config = uvicorn.Config(self.app, log_level="warning", ws_max_size=WS_MAX_BYTES,
                                ws_per_message_deflate=False, lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread: threading.Thread | None = None

    @property
    def base(self) -> str:
        """``http://HOST:PORT`` (the loopback address when bound to every interface)."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else (
            "[::1]" if self.host == "::" else self.host)
        host = f"[{host}]" if ":" in host and not host.startswith("[") else host
        return f"http://{host}:{self.port}"

    @property
    def url(self) -> str:
        """The page's address with the token: the one URL to open."""
        return f"{self.base}/?token={self.token}"

    def serve(self) -> None:
        """Serve until Ctrl-C (uvicorn stops cleanly on SIGINT/SIGTERM)."""
        self.server.run(sockets=[self.socket])

    def start(self, timeout: float = 30.0) -> PlayServer:
        """Serve from a daemon thread; return once the server accepts connections."""
        self.thread = threading.Thread(target=self.serve, name="gradsight-play", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise GradsightError(f"the playground server did not start on {self.base}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stop a server started with :meth:`start` (open sockets are closed)."""
        self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=10)
        self.socket.close()

    def __enter__(self) -> PlayServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, or a one-line error (port taken, unknown host)."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as error:
        raise GradsightError(f"cannot listen on {host}:{port}: {error.strerror or error}") \
            from None
    sock.set_inheritable(True)
    return sock


def in_notebook() -> bool:
    """True inside a Jupyter kernel (IPython's ZMQ shell), where the page is shown inline."""
    ipython = sys.modules.get("IPython")
    shell = getattr(ipython, "get_ipython", lambda: None)() if ipython else None
    return type(shell).__name__ == "ZMQInteractiveShell"


def play(host: str = "127.0.0.1", port: int = 0, open_browser: bool = True,
         lang: str = "en", *, limits: Limits | None = None) -> Any:
    """Start the playground and print its URL (with the session token).

    In a Jupyter notebook the server runs in the background and the page is returned as an
    inline frame (an ``IPython.display.IFrame`` whose ``server`` attribute is the
    :class:`PlayServer`: ``frame.server.stop()`` stops it); elsewhere the page opens in the browser
    (unless ``open_browser`` is false) and the call serves until Ctrl-C, like
    ``gradsight play``.
    """
    server = PlayServer(host, port, lang, limits)
    print(f"gradsight play: {server.url}", flush=True)
    warning = host_warning(host)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    if in_notebook():
        from IPython.display import IFrame  # only inside a notebook, where IPython is

        server.start()
        frame = IFrame(server.url, width="100%", height=760)
        frame.server = server  # frame.server.stop() stops it before the kernel does
        return frame
    if open_browser:
        try:
            webbrowser.open(server.url)
        except webbrowser.Error:
            pass  # no browser: the printed URL is the way in
    try:
        server.serve()
    except KeyboardInterrupt:  # uvicorn has shut down cleanly and passes Ctrl-C on
        pass
    print("gradsight play: stopped", file=sys.stderr, flush=True)
    return None
