"""The transparent NumPy neural-network engine: layers, losses, initialisers, models.

Everything the seeds describe, written so a reader can follow each step: forward propagation
z = a·W + b, a = f(z); a cost C with its gradient ∂C/∂ŷ; backpropagation by the chain rule,
δ = ∂C/∂a ⊙ f′(z), ∂C/∂W = aᵀδ; and the update w ← w − η ∂C/∂w (:mod:`gradsight.optim`,
driven by :func:`gradsight.fit`).

>>> import numpy as np
>>> from gradsight import nn
>>> model = nn.mlp("2-4-1", activation="tanh", output_activation="sigmoid", seed=0)
>>> C = nn.loss("quadratic")
>>> X, y = np.array([[0.0, 1.0]]), np.array([1.0])
>>> _ = model.backward(C.gradient(model.forward(X), y))
>>> [g.shape for g in model.gradients()]
[(2, 4), (4,), (4, 1), (1,)]
"""

from __future__ import annotations

from . import init
from .layers import Activation, Dense, Layer
from .losses import BCEWithLogits, CrossEntropy, Loss, Quadratic, loss
from .losses import names as loss_names
from .model import Sequential, mlp, parse_sizes

__all__ = [
    "Activation", "BCEWithLogits", "CrossEntropy", "Dense", "Layer", "Loss", "Quadratic",
    "Sequential", "init", "loss", "loss_names", "mlp", "parse_sizes",
]
