"""The attention entropy of every head of nn.MultiheadAttention, at the recorded steps.

A head turns each query's scores into probabilities over the T keys it may attend,
p = softmax(q kᵀ/√d + mask). Their entropy H(p) = −Σ p log p (nats) is 0 when the head
looks at one key only (collapsed attention) and ln T when it looks at all keys alike
(uniform attention: it averages and selects nothing). Per head the record holds the mean of
H over the batch's queries and, to compare with, the mean of ln T over the same queries
(``attention_entropy_uniform``; T counts the keys the masks leave a query).

Why recomputed: the module computes p inside ``F.multi_head_attention_forward`` and returns
them only when asked (``need_weights=True``); ``nn.TransformerEncoderLayer`` asks with
``need_weights=False``, and with it the fused kernels never form p at all. So at recorded
steps only, a forward pre-hook recomputes p from the module's own projection weights and the
call's inputs and masks, under ``torch.no_grad()`` — the module's math (packed or separate
Q/K projections, their biases, ``bias_k``, ``add_zero_attn``, boolean or additive
``attn_mask`` and ``key_padding_mask``, batch_first and unbatched inputs), so the numbers
are those of the probabilities the module uses, before its attention dropout (which zeroes
some of them at random in training). Cost at a recorded step: the Q and K projections and
one (batch, heads, queries, keys) score tensor per call.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ...diagnostics.stats import LayerStats
from ._reduce import Transfer
from ._torch import require_torch

#: the suffix of an attention module's records, followed by the head number
SUFFIX = ":head"


@dataclass
class AttentionLayer:
    name: str
    module: Any
    sums: list[Any] = field(default_factory=list)  # the step's (3, H) tensors per call


def find_attention(model: Any, nn: Any) -> list[AttentionLayer]:
    """The nn.MultiheadAttention modules of ``model`` (already unwrapped)."""
    return [AttentionLayer(name or "multiheadattention", module)
            for name, module in model.named_modules()
            if isinstance(module, nn.MultiheadAttention)]


def _canonical(torch: Any, mask: Any, dtype: Any) -> Any:
    """A mask as additive scores: True (not allowed) → −inf; a float mask as it is."""
    if mask is None:
        return None
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(
            mask, -math.inf)
    return mask.to(dtype)


def head_entropy_sums(module: Any, query: Any, key: Any, key_padding_mask: Any = None,
                      attn_mask: Any = None) -> Any:
    """(3, H) tensor of Σ H(p), Σ ln T and the number of queries, per head, over the queries
    of one call of ``module`` (an nn.MultiheadAttention) — queries that may attend no key
    (every key masked) are left out. Computed without gradient, in float32 at least.

    H(p) = −Σ p log p with log p = log_softmax(scores): one pass for log p, one for p·log p
    (a masked key has p = 0 and log p = −inf: its term is set to 0, as 0·log 0 = 0)."""
    torch = require_torch()
    F = torch.nn.functional
    with torch.no_grad():
        dtype = torch.promote_types(query.dtype, torch.float32)
        E, H = module.embed_dim, module.num_heads
        d = E // H
        self_attention = query is key
        if query.dim() == 2:  # unbatched (L, E): one sequence
            query, key = query.unsqueeze(0), key.unsqueeze(0)
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)
            seq_first = False
        else:
            seq_first = not module.batch_first
        packed, bias = module.in_proj_weight, module.in_proj_bias
        if self_attention and packed is not None:  # Q and K in one product
            both = F.linear(query.to(dtype), packed[:2 * E].to(dtype),
                            bias[:2 * E].to(dtype) if bias is not None else None)
            q, k = both[..., :E], both[..., E:]
        else:
            w_q = packed[:E] if packed is not None else module.q_proj_weight
            w_k = packed[E:2 * E] if packed is not None else module.k_proj_weight
            q = F.linear(query.to(dtype), w_q.to(dtype),
                         bias[:E].to(dtype) if bias is not None else None)
            k = F.linear(key.to(dtype), w_k.to(dtype),
                         bias[E:2 * E].to(dtype) if bias is not None else None)
        if seq_first:  # (T, B, E) → (B, T, E)
            q, k = q.transpose(0, 1), k.transpose(0, 1)
        B, L, S = q.shape[0], q.shape[1], k.shape[1]
        attn = _canonical(torch, attn_mask, dtype)
        pad = _canonical(torch, key_padding_mask, dtype)
        extra = []
        if module.bias_k is not None:
            extra.append(module.bias_k.to(dtype).reshape(1, 1, E).expand(B, 1, E))
        if module.add_zero_attn:
            extra.append(torch.zeros(B, 1, E, dtype=dtype, device=k.device))
        if extra:  # appended keys are allowed to every query, as in the module
            k = torch.cat([k, *extra], 1)
            attn = F.pad(attn, (0, len(extra))) if attn is not None else None
            pad = F.pad(pad, (0, len(extra))) if pad is not None else None
            S = k.shape[1]
        q = q.reshape(B, L, H, d).transpose(1, 2).mul(1.0 / math.sqrt(d))
        k = k.reshape(B, S, H, d).permute(0, 2, 3, 1)
        scores = torch.matmul(q, k)  # (B, H, L, S): q·k/√d
        if attn is not None:
            scores = scores + (attn.reshape(B, H, L, S) if attn.dim() == 3 else attn)
        if pad is not None:
            scores = scores + pad.reshape(B, 1, 1, S)
        log_p = torch.log_softmax(scores, -1)
        terms = log_p.exp().mul_(log_p)
        # sums in float64 (where the device has it): ln T exact, many queries summed
        total = torch.float32 if scores.device.type == "mps" else torch.float64
        if attn is None and pad is None:
            entropy = terms.sum(-1, dtype=total).neg_().sum((0, 2))
            queries = torch.full((H,), B * L, dtype=total, device=scores.device)
            return torch.stack([entropy, queries * math.log(S), queries])
        blocked = scores == -math.inf
        entropy = terms.masked_fill_(blocked, 0.0).sum(-1, dtype=total).neg_()
        allowed = S - blocked.sum(-1)  # keys each query may attend
        valid = allowed > 0
        uniform = torch.log(allowed.clamp_min(1).to(total))
        zero = torch.zeros((), dtype=total, device=scores.device)
        return torch.stack([torch.where(valid, entropy, zero).sum((0, 2)),
                            torch.where(valid, uniform, zero).sum((0, 2)),
                            valid.sum((0, 2)).to(total)])


_POSITIONS = ("query", "key", "value", "key_padding_mask", "need_weights", "attn_mask")


class AttentionEntropy:
    """The attention entropy per head of every nn.MultiheadAttention, at recorded steps."""

    def __init__(self, torch: Any, model: Any, order: dict[str, int]) -> None:
        self.torch = torch
        self.layers = find_attention(model, torch.nn)
        self.order = order
        self._handles: list[Any] = []
        #: whether the current step is recorded (the watcher's schedule; hooks that stay
        #: installed on every step, as under torch.compile, return at once otherwise)
        self.recording: Callable[[], bool] = lambda: True

    def hooks(self, on: bool) -> None:
        if on and not self._handles:
            self._handles = [layer.module.register_forward_pre_hook(
                self._pre_hook(layer), with_kwargs=True) for layer in self.layers]
        elif not on:
            for handle in self._handles:
                handle.remove()
            self._handles = []

    def clear(self) -> None:
        for layer in self.layers:
            layer.sums = []

    def _pre_hook(self, layer: AttentionLayer) -> Any:
        torch, order = self.torch, self.order

        def hook(module: Any, args: Any, kwargs: Any) -> None:
            if not torch.is_grad_enabled() or not self.recording():
                return
            order.setdefault(layer.name + SUFFIX, len(order))
            given = dict(zip(_POSITIONS, args, strict=False)) | kwargs
            query, key = given.get("query"), given.get("key")
            if not isinstance(query, torch.Tensor) or not isinstance(key, torch.Tensor) \
                    or query.is_nested:
                return
            layer.sums.append(head_entropy_sums(module, query, key,
                                                given.get("key_padding_mask"),
                                                given.get("attn_mask")))

        return hook

    def take(self, transfer: Transfer) -> list[PendingAttention]:
        """The step's sums added to ``transfer``; the step's state is cleared."""
        pending = []
        for layer in self.layers:
            if layer.sums:
                self.order.setdefault(layer.name + SUFFIX, len(self.order))
                total = layer.sums[0] if len(layer.sums) == 1 else \
                    self.torch.stack(layer.sums).sum(0)
                heads = total.shape[1]
                pending.append(PendingAttention(layer.name, transfer.add(total, summed=True),
                                                heads))
        self.clear()
        return pending


class PendingAttention:
    """Where one attention module's per-head sums of a step are in the transfer."""

    def __init__(self, name: str, at: int, heads: int) -> None:
        self.name, self.at, self.heads = name, at, heads
        self.key = name + SUFFIX  # its place in the forward order

    def records(self, base: dict[str, Any], values: list[float]) -> list[LayerStats]:
        h, at = self.heads, self.at
        result = []
        for head in range(h):
            entropy, uniform, count = values[at + head], values[at + h + head], \
                values[at + 2 * h + head]
            fields = {**base, "layer": f"{self.name}{SUFFIX}{head}"}
            result.append(LayerStats(
                **fields, kind="attention",
                attention_entropy=entropy / count if count else math.nan,
                attention_entropy_uniform=uniform / count if count else math.nan))
        return result
