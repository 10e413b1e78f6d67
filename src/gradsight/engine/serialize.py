"""Save and load models: one ``.npz`` file holding a JSON spec and the weights.

The file is a NumPy ``.npz`` archive (a zip of ``.npy`` arrays; no pickles, so loading a file
runs no code) with

* ``spec``: a JSON text — ``{"format": "gradsight-model", "version": 1, "gradsight": ...,
  "model": {architecture: layer types, sizes, activation names, initialiser names, dtype},
  "metadata": {...}}``;
* one array per parameter, named ``dense0.W``, ``dense0.b``, ``dense1.W``, ...

It is written atomically (temp file + rename), and a loaded model predicts identically.

>>> import tempfile, pathlib, numpy as np
>>> from gradsight import nn
>>> model = nn.mlp("2-3-1", activation="tanh", seed=0)
>>> path = pathlib.Path(tempfile.mkdtemp()) / "model.npz"
>>> _ = save(model, path)
>>> X = np.ones((2, 2))
>>> bool((load(path).predict(X) == model.predict(X)).all())
True
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..errors import DataError, GradsightError, InvalidValueError
from ..io import atomic_path, jsonable
from .layers import Dense
from .model import Sequential

__all__ = ["save", "load", "FILE_FORMAT", "FILE_VERSION"]

FILE_FORMAT = "gradsight-model"
FILE_VERSION = 1


def _weight_names(model: Sequential) -> list[str]:
    return [f"{layer.name}.{p}" for layer in model.dense_layers for p in ("W", "b")]


def save(
    model: Sequential, path: str | os.PathLike[str], metadata: dict[str, Any] | None = None
) -> Path:
    """Write ``model`` (architecture, dtype, weights, optional JSON-able ``metadata``) to
    ``path`` atomically; return the path."""
    if not isinstance(model, Sequential):
        raise InvalidValueError(
            f"can only save a gradsight Sequential, got {type(model).__name__}"
        )
    if any(type(layer) is not Dense and layer.parameters() for layer in model.layers):
        raise InvalidValueError("can only save models made of Dense and Activation layers")
    document = {
        "format": FILE_FORMAT, "version": FILE_VERSION, "gradsight": __version__,
        "model": model.spec,
        "metadata": jsonable(metadata if metadata is not None else model.metadata),
    }
    arrays: dict[str, Any] = dict(zip(_weight_names(model), model.parameters(), strict=True))
    arrays["spec"] = np.array(json.dumps(document))
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            # a file object, so that np.savez does not append ".npz" to the temp name
            np.savez(handle, **arrays)
    except OSError as error:
        raise DataError(f"cannot write the model to {str(path)!r}: {error}") from None
    return Path(path)


def _read(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    # np.load reads a non-zip file as a .npy or a pickle: refuse it here, with a plain message
    if not zipfile.is_zipfile(path):
        raise DataError(f"cannot read {str(path)!r} as a gradsight model: it is not an .npz "
                        f"(zip) archive written by gradsight.save")
    try:
        with np.load(path, allow_pickle=False) as archive:
            if "spec" not in archive.files:
                raise DataError(f"{str(path)!r} is an .npz file but not a gradsight model")
            document = json.loads(str(archive["spec"][()]))
            arrays = {name: archive[name] for name in archive.files if name != "spec"}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, AttributeError, TypeError) as error:
        if isinstance(error, DataError):
            raise
        raise DataError(
            f"cannot read {str(path)!r} as a gradsight model (.npz): {error}"
        ) from None
    return document, arrays


def load(path: str | os.PathLike[str]) -> Sequential:
    """Read a model written by :func:`save` (its metadata in ``model.metadata``)."""
    file = Path(path)
    if not file.is_file():
        raise DataError(f"model file {str(path)!r} does not exist")
    document, arrays = _read(file)
    if not isinstance(document, dict) or document.get("format") != FILE_FORMAT:
        raise DataError(f"{str(path)!r} is not a gradsight model file")
    if document.get("version") != FILE_VERSION:
        raise DataError(
            f"{str(path)!r} has model file version {document.get('version')!r}; this gradsight "
            f"reads version {FILE_VERSION}"
        )
    try:
        skeleton = Sequential.from_spec(document["model"])
        names = _weight_names(skeleton)
        missing = [name for name in names if name not in arrays]
        if missing:
            raise DataError(f"weights {', '.join(missing)} are missing")
        model = Sequential.from_spec(document["model"], [arrays[name] for name in names])
    except (GradsightError, KeyError, TypeError, ValueError) as error:
        raise DataError(f"{str(path)!r} holds a broken gradsight model: {error}") from None
    model.metadata = dict(document.get("metadata") or {})
    return model
