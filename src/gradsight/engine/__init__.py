"""The transparent NumPy neural-network engine: layers, losses, initialisers, models, training.

Everything the articles describe, written so a reader can follow each step: forward
propagation z = a·W + b, a = f(z) (:mod:`.layers`); a cost C with its gradient ∂C/∂ŷ
(:mod:`.losses`); backpropagation by the chain rule, δ = ∂C/∂a ⊙ f′(z), ∂C/∂W = aᵀδ, as one
loop over the layers (:meth:`.model.Sequential.backward`); and the update
w ← w − η ∂C/∂w (:mod:`gradsight.optim`), one step at a time (:mod:`.step`), driven by
:func:`.train.fit`. Also here: the data sets (:mod:`.data`), saving (:mod:`.serialize`) and
the gradient check (:mod:`.gradcheck`).

Everything that exists only for speed is in :mod:`.fast`, which no module of the readable
engine imports: ``fit`` chooses the plain step or the fast one once per call.

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
