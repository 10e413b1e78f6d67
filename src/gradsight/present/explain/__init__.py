"""Backpropagation explained with numbers: the chain rule through one sigmoid neuron (the
articles' ŷ = σ(wᵀx + b) with the quadratic cost) and then layer by layer through a small
network.

For one sample the cost is C = ½(ŷ − y)² (the articles' C = 1/(2N) Σ(ŷ − y)² with N = 1), and

    ∂C/∂w = ∂C/∂ŷ · ∂ŷ/∂z · ∂z/∂w = (ŷ − y) · σ(z)(1 − σ(z)) · x,     ∂C/∂b = (ŷ − y) · σ′(z)

after which gradient descent moves w_new = w_old − η ∂C/∂w. Every walkthrough also runs the
gradsight engine's backward pass and a central-difference check on the same numbers and says
whether the three agree.

>>> walk = explain_neuron()
>>> round(walk.z, 6), round(walk.y_hat, 4), walk.agree
(0.2, 0.5498, True)
"""

from __future__ import annotations

from ._common import ENGINE_ATOL, ENGINE_RTOL, NUMERIC_ATOL, NUMERIC_RTOL, fmt
from .network import LayerStep, NetworkWalkthrough, explain_network
from .neuron import NeuronTraining, NeuronWalkthrough, explain_neuron, train_neuron

__all__ = [
    "NeuronWalkthrough", "explain_neuron", "LayerStep", "NetworkWalkthrough", "explain_network",
    "NeuronTraining", "train_neuron", "fmt",
    # how close the hand-made gradient must be to the engine's and to central differences
    "ENGINE_ATOL", "ENGINE_RTOL", "NUMERIC_ATOL", "NUMERIC_RTOL",
]
