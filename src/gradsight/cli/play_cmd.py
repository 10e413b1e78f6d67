"""``gradsight play``: the interactive playground in the browser (see :mod:`gradsight.play`)."""

from __future__ import annotations

import typer

from ..errors import InvalidValueError
from ._common import command

LANGUAGES = ("en", "it", "es", "id")


def register(app: typer.Typer) -> None:
    """Add ``play`` to ``app``."""

    @command(app, "play")
    def play(
        host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (another "
                                 "than this machine's loopback prints a warning)."),
        port: int = typer.Option(0, "--port", help="Port to listen on (0: a free one)."),
        no_browser: bool = typer.Option(False, "--no-browser", help="Print the URL only; do "
                                        "not open a browser."),
        lang: str = typer.Option("en", "--lang", help="Language of the page: en, it, es or "
                                 "id (the page can switch)."),
    ) -> None:
        """Start the playground: a local web server whose page shows gradient descent on a
        function you type and a network learning live — its decision boundary, the gradient
        flow of every layer, the state of every unit and the findings. Prints the URL with
        its session token; Ctrl-C stops it."""
        if lang not in LANGUAGES:
            raise InvalidValueError(f"--lang must be one of {', '.join(LANGUAGES)}, got "
                                    f"{lang!r}")
        # late: Starlette, uvicorn and NumPy, not needed for --help
        from ..play.launch import play as start

        start(host=host, port=port, open_browser=not no_browser, lang=lang)
