"""``gradsight play``: the interactive playground in the browser, on gradsight's own engine.

A local web server (:mod:`.server`, Starlette on uvicorn) serves the page (``static/``) and
gives every browser tab its own session over a WebSocket: the descent view runs
:func:`gradsight.calculus.descent.compare` on a typed function (:mod:`.descent`), the network
view trains a network step by step exactly as :func:`gradsight.fit` does (:mod:`.sessions`),
and every message is checked against :class:`~.limits.Limits` (:mod:`.protocol`).

The package is itself callable: ``gradsight.play()`` is :func:`.launch.play`.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any

from .launch import PlayServer, play
from .limits import Limits
from .server import make_app

__all__ = ["Limits", "PlayServer", "make_app", "play"]


class _CallableModule(ModuleType):
    """``gradsight.play`` is this package and ``gradsight.play()`` starts the playground:
    the package's name and the function's are one name."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return play(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
