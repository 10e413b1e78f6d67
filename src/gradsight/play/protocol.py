"""The messages between the page and the server: read, checked, refused in one line.

Every message is a JSON object with a ``"type"``. :func:`read_message` turns the text a page
sent into ``(type, fields)`` with every field checked against :class:`~.limits.Limits` and
the defaults filled in, or raises :class:`ProtocolError` whose ``field`` and ``message`` go
back to the page as ``{"type": "error", "field": ..., "message": ...}``. Nothing a page
sends can reach the engine unchecked: names are checked by the library itself (an unknown
activation is the engine's :class:`~gradsight.errors.UnknownNameError`), numbers here.

>>> read_message('{"type": "set", "lr": 0.1}', Limits())
('set', {'lr': 0.1})
>>> read_message('{"type": "set", "lr": 1e308}', Limits())
Traceback (most recent call last):
...
gradsight.play.protocol.ProtocolError: lr (the learning rate η) must be in (0, 10], got 1e+308
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from ..errors import GradsightError
from .limits import Limits

__all__ = ["DEFAULT_CONFIG", "MESSAGE_TYPES", "ProtocolError", "VANISHING_DEFAULTS",
           "error_message", "jsonable", "read_message", "to_text"]

#: what the page starts with (and what a ``configure`` leaves out takes)
DEFAULT_CONFIG: dict[str, Any] = {
    "dataset": "moons", "hidden": [8, 8], "activation": "tanh", "init": "xavier_uniform",
    "loss": "cross_entropy", "optimizer": "adam", "lr": 0.03, "batch_size": 16, "seed": 0,
    "n_samples": 200, "steps_per_frame": 10,
    "upload": None,  # or the id POST /api/upload answered: train on that CSV (not dataset)
}
DATASETS = ("xor", "circles", "moons", "spirals", "gauss")
LOSSES = ("cross_entropy", "quadratic")
DESCENT_DEFAULTS: dict[str, Any] = {"expression": "x^2 - 4*x + 6", "optimizer": "sgd",
                                    "lr": 0.1, "x0": [8.0], "steps": 100}
#: the vanishing view's network (Nielsen's chapter 5 on the first 1,000 ``digits``, as the
#: vanishing-gradient lab measures it) and what a ``vanishing`` message leaves out takes
VANISHING_DEFAULTS: dict[str, Any] = {
    "depth": 4, "width": 30, "activation": "sigmoid", "init": "scaled_normal",
    "bias_init": "normal", "loss": "cross_entropy", "lr": 0.1, "batch_size": 10, "seed": 0,
    "samples": 1000,
}
VANISHING_LOSSES = ("cross_entropy", "softmax", "quadratic")  # the lab's costs
#: type → the fields it may carry (besides "type")
MESSAGE_TYPES: dict[str, tuple[str, ...]] = {
    "descent": ("expression", "optimizer", "lr", "lrs", "x0", "steps"),
    "configure": tuple(DEFAULT_CONFIG),
    "play": (), "pause": (), "reset": (),
    "step": ("count",),
    "set": ("lr", "steps_per_frame"),
    "unit": ("layer", "index"),
    "weight": ("layer", "row", "col", "sample"),
    "vanishing": tuple(VANISHING_DEFAULTS),
    "vanishing_step": ("count",),
}
LR_NAME = "lr (the learning rate η)"


class ProtocolError(GradsightError):
    """A message refused: ``field`` is the offending field's name (None for the message as
    a whole), the text says what was wrong and what is allowed."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field = field


def error_message(field: str | None, message: str) -> dict[str, Any]:
    """The ``error`` message the page shows: one line."""
    return {"type": "error", "field": field, "message": " ".join(str(message).split())}


def _shown(value: Any) -> str:
    """A value as it appears in a message: short, whatever was sent."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


# ---- reading one message -----------------------------------------------------------------
def read_message(text: str | bytes, limits: Limits) -> tuple[str, dict[str, Any]]:
    """``(type, fields)`` of one message, checked; raises :class:`ProtocolError`."""
    size = len(text) if isinstance(text, bytes) else len(text.encode("utf-8", "replace"))
    if size > limits.max_message_bytes:
        raise ProtocolError(None, f"message of {size} bytes refused: the limit is "
                                  f"{limits.max_message_bytes} bytes")
    try:
        message = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ProtocolError(None, f"malformed message: not JSON ({reason})") from None
    if not isinstance(message, dict):
        raise ProtocolError(None, f"a message must be a JSON object with a \"type\", got "
                                  f"{type(message).__name__}")
    kind = message.get("type")
    if not isinstance(kind, str) or kind not in MESSAGE_TYPES:
        raise ProtocolError("type", f"unknown message type {_shown(kind)}; known: "
                                    f"{', '.join(MESSAGE_TYPES)}")
    allowed = MESSAGE_TYPES[kind]
    for key in message:
        if key != "type" and key not in allowed:
            fields = ", ".join(allowed) or "none"
            raise ProtocolError(str(key), f"unknown field {_shown(key)} in a {kind} message; "
                                          f"fields: {fields}")
    given = {key: value for key, value in message.items() if key != "type"}
    return kind, _CHECKS[kind](given, limits)


def number(fields: dict[str, Any], key: str, low: float, high: float, *,
           open_low: bool = False, label: str | None = None) -> float:
    """A finite number in [low, high] (or (low, high] with ``open_low``)."""
    value, name = fields[key], label or key
    interval = f"{'(' if open_low else '['}{low:g}, {high:g}]"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ProtocolError(key, f"{name} must be a number in {interval}, got {_shown(value)}")
    try:
        result = float(value)
    except OverflowError:  # an integer with hundreds of digits
        raise ProtocolError(key, f"{name} must be in {interval}, got a number of "
                                 f"{len(str(value))} digits") from None
    if not math.isfinite(result) or result > high or result < low or (
            open_low and result == low):
        raise ProtocolError(key, f"{name} must be in {interval}, got {_shown(value)}")
    return result


def integer(fields: dict[str, Any], key: str, low: int, high: int) -> int:
    """A whole number in [low, high] (2.0 is 2; 2.5 is refused)."""
    value = fields[key]
    whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not whole:
        raise ProtocolError(key, f"{key} must be a whole number in [{low}, {high}], got "
                                 f"{_shown(value)}")
    if not low <= value <= high:
        shown = _shown(value) if len(str(value)) < 30 else f"a number of {len(str(value))} digits"
        raise ProtocolError(key, f"{key} must be in [{low}, {high}] (the limit), got {shown}")
    return int(value)


def name(fields: dict[str, Any], key: str, choices: tuple[str, ...] | None = None) -> str:
    """A short name (checked against ``choices`` when given, else by the library)."""
    value = fields[key]
    if not isinstance(value, str) or not 0 < len(value) <= 40:
        raise ProtocolError(key, f"{key} must be a name (text of 1 to 40 characters), got "
                                 f"{_shown(value)}")
    key_value = value.strip().lower()
    if choices is not None and key_value not in choices:
        raise ProtocolError(key, f"unknown {key} {_shown(value)}; known: {', '.join(choices)}")
    return key_value


def _check_configure(fields: dict[str, Any], limits: Limits) -> dict[str, Any]:
    config = {**DEFAULT_CONFIG, **fields}
    hidden = config["hidden"]
    if not isinstance(hidden, list):
        raise ProtocolError("hidden", f"hidden must be a list of layer sizes like [8, 8], got "
                                      f"{_shown(hidden)}")
    if len(hidden) > limits.max_hidden_layers:
        raise ProtocolError("hidden", f"{len(hidden)} hidden layers asked; the limit is "
                                      f"{limits.max_hidden_layers}")
    config["hidden"] = [integer({"hidden": size}, "hidden", 1, limits.max_units)
                        for size in hidden]
    upload = config["upload"]
    if upload is None:
        config["dataset"] = name(config, "dataset", DATASETS)
    elif isinstance(upload, str) and 0 < len(upload) <= 64:
        config["dataset"] = "csv"  # the uploaded file's rows, not a generated data set
    else:
        raise ProtocolError("upload", f"upload must be null or the id that /api/upload "
                                      f"answered, got {_shown(upload)}")
    config["loss"] = name(config, "loss", LOSSES)
    for key in ("activation", "init", "optimizer"):
        config[key] = name(config, key)  # the engine knows the names
    config["lr"] = number(config, "lr", 0.0, limits.max_lr, open_low=True, label=LR_NAME)
    config["batch_size"] = integer(config, "batch_size", limits.min_batch_size,
                                   limits.max_batch_size)
    config["seed"] = integer(config, "seed", 0, limits.max_seed)
    config["n_samples"] = integer(config, "n_samples", limits.min_points, limits.max_points)
    config["steps_per_frame"] = integer(config, "steps_per_frame", 1,
                                        limits.max_steps_per_frame)
    return config


def _check_set(fields: dict[str, Any], limits: Limits) -> dict[str, Any]:
    checked: dict[str, Any] = {}
    if "lr" in fields:
        checked["lr"] = number(fields, "lr", 0.0, limits.max_lr, open_low=True, label=LR_NAME)
    if "steps_per_frame" in fields:
        checked["steps_per_frame"] = integer(fields, "steps_per_frame", 1,
                                             limits.max_steps_per_frame)
    return checked


def _check_step(fields: dict[str, Any], limits: Limits) -> dict[str, Any]:
    if "count" not in fields:
        return {"count": 1}
    return {"count": integer(fields, "count", 1, limits.max_steps_per_frame)}


def _check_descent(fields: dict[str, Any], limits: Limits) -> dict[str, Any]:
    request = {**DESCENT_DEFAULTS, **fields}
    expression = request["expression"]
    if not isinstance(expression, str):
        raise ProtocolError("expression", f"expression must be text like 'x^2 - 4*x + 6', got "
                                          f"{_shown(expression)}")
    if len(expression) > limits.max_expression_chars:
        raise ProtocolError("expression", f"expression of {len(expression)} characters; the "
                                          f"limit is {limits.max_expression_chars}")
    request["optimizer"] = name(request, "optimizer")
    request["lr"] = number(request, "lr", 0.0, limits.max_lr, open_low=True, label=LR_NAME)
    lrs = request.get("lrs")
    if lrs is not None:
        if not isinstance(lrs, list) or not lrs:
            raise ProtocolError("lrs", f"lrs must be a non-empty list of learning rates, got "
                                       f"{_shown(lrs)}")
        if len(lrs) > limits.max_descent_rates:
            raise ProtocolError("lrs", f"{len(lrs)} learning rates asked; the limit is "
                                       f"{limits.max_descent_rates}")
        request["lrs"] = [number({"lrs": v}, "lrs", 0.0, limits.max_lr, open_low=True,
                                 label="each η of lrs") for v in lrs]
    x0 = request["x0"]
    x0 = [x0] if isinstance(x0, (int, float)) and not isinstance(x0, bool) else x0
    if not isinstance(x0, list) or not 1 <= len(x0) <= 2:
        raise ProtocolError("x0", f"x0 must be one or two numbers (the start), got {_shown(x0)}")
    request["x0"] = [number({"x0": v}, "x0", -limits.max_start, limits.max_start) for v in x0]
    request["steps"] = integer(request, "steps", 1, limits.max_descent_steps)
    return request


def _check_unit(fields: dict[str, Any], limits: Limits) -> dict[str, Any]:
    if "layer" not in fields or "index" not in fields:
        raise ProtocolError(None, "a unit message needs \"layer\" (e.g. \"dense0\") and "
                                  "\"index\" (the unit's number)")
    return {"layer": name(fields, "layer"),
            "index": integer(fields, "index", 0, limits.max_units - 1)}


def _check_weight(fields: dict[str, Any], limits: Limits) -> dict[str, Any]:
    for key in ("layer", "row", "col"):
        if key not in fields:
            raise ProtocolError(key, "a weight message needs \"layer\" (e.g. \"dense1\"), "
                                     "\"row\" and \"col\" (the weight W[row, col])")
    biggest = max(limits.max_units, 2) - 1  # rows of dense0 are the 2 inputs
    return {"layer": name(fields, "layer"), "row": integer(fields, "row", 0, biggest),
            "col": integer(fields, "col", 0, biggest),
            # any training sample of the largest data set (an upload); the session refuses
            # one beyond its own training set, naming its size
            "sample": integer({"sample": fields.get("sample", 0)}, "sample", 0,
                              max(limits.max_points, limits.max_upload_rows) - 1)}


def _check_vanishing(fields: dict[str, Any], limits: Limits) -> dict[str, Any]:
    request = {**VANISHING_DEFAULTS, **fields}
    request["depth"] = integer(request, "depth", 1, limits.max_hidden_layers)
    request["width"] = integer(request, "width", 1, limits.max_units)
    for key in ("activation", "init", "bias_init"):
        request[key] = name(request, key)  # the engine knows the names
    request["loss"] = name(request, "loss", VANISHING_LOSSES)
    request["lr"] = number(request, "lr", 0.0, limits.max_lr, open_low=True, label=LR_NAME)
    request["batch_size"] = integer(request, "batch_size", limits.min_batch_size,
                                    limits.max_batch_size)
    request["seed"] = integer(request, "seed", 0, limits.max_seed)
    request["samples"] = integer(request, "samples", limits.min_points, limits.max_points)
    return request


_CHECKS = {
    "descent": _check_descent, "configure": _check_configure, "set": _check_set,
    "step": _check_step,
    "play": lambda fields, limits: {}, "pause": lambda fields, limits: {},
    "reset": lambda fields, limits: {},
    "unit": _check_unit, "weight": _check_weight, "vanishing": _check_vanishing,
    "vanishing_step": _check_step,
}


# ---- writing ------------------------------------------------------------------------------
def jsonable(value: Any) -> Any:
    """``value`` with NumPy arrays and scalars as lists and numbers, and every non-finite
    float as None (JSON has no NaN): what :func:`to_text` can always write."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            return jsonable(value.astype(object).tolist())
        return value.tolist()
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def to_text(message: dict[str, Any]) -> str:
    """One message as JSON text (strict: no NaN, no Infinity)."""
    return json.dumps(jsonable(message), allow_nan=False, separators=(",", ":"),
                      ensure_ascii=False)
