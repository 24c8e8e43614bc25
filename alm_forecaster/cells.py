"""Cell math of the xLSTM recurrences, separate from the layer plumbing in `model.py`.

Per step, with gates = x @ weight_ih.T + bias + h @ weight_hh.T (zero initial state):

    sLSTM  i, f, g, o = gates (4 chunks);  i = exp(clamp(i, -10, 10));  f = exp(clamp(f, -10, 10))
           c' = f * c + i * tanh(g);  h' = sigmoid(o) * tanh(c')
    mLSTM  i, f, o = gates (3 chunks);  i = exp(clamp(i, -15, 8));  f = exp(clamp(f, -15, 8))
           q = x @ W_q.T / sqrt(H);  k = x @ W_k.T / sqrt(H);  v = x @ W_v.T
           C' = f[:, None] * C + i[:, None] * (v[:, None] * k[None, :])     (one sample's H x H)
           C' = C' / (1 + max|C'| / 10)                 (max over that sample's matrix only)
           h' = sigmoid(o) * (q @ C')                   (h'[j] = sum_r q[r] C'[r, j])

These are the equations the platform's checkpoints were trained with, so they are a contract:
a different clamp or normalisation gives other forecasts from the same weights.

The forward is restructured for inference: every input-side projection of a whole sequence
is one matrix multiply (`project`), so only the recurrent part (``h @ W_hh.T`` and the gates)
runs in the time loop. The sequence functions take those precomputed input gates.

A compiled kernel (`alm_forecaster.native`) implements the same three functions; it is
used for float32 CPU tensors when it has been built, and these PyTorch versions are the
fallback everywhere else (CUDA, MPS, float64, kernel not built).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from alm_forecaster import native

SLSTM_CLAMP = 10.0
MLSTM_CLAMP_LOW, MLSTM_CLAMP_HIGH = -15.0, 8.0
#: C' / (1 + max|C'| / MEMORY_SCALE): the mLSTM memory normalisation.
MEMORY_SCALE = 10.0


def project(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """x @ weight.T + bias at every step of a sequence: a cell's input side, (B, T, in) -> (B, T, N)."""
    if native.supports(x, weight, bias):
        return native.linear(x, weight, bias)
    return F.linear(x, weight, bias)


def slstm_sequence(x_gates: torch.Tensor, weight_hh: torch.Tensor) -> torch.Tensor:
    """Run an sLSTM cell over time from zero state.

    x_gates: (B, T, 4H) = x @ weight_ih.T + bias for every step. Returns h for every step,
    (B, T, H).
    """
    if native.supports(x_gates, weight_hh):
        return native.slstm_sequence(x_gates, weight_hh)
    return _slstm_sequence_torch(x_gates, weight_hh)


def mlstm_sequence(
    x_gates: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, weight_hh: torch.Tensor
) -> torch.Tensor:
    """Run an mLSTM cell over time from zero state, memory normalised per sample.

    x_gates: (B, T, 3H) = x @ weight_ih.T + bias; q (already divided by sqrt(H)), k
    (likewise) and v: (B, T, H). Returns h for every step, (B, T, H).

    The normalisation takes max|C'| over each sample's own H x H matrix, never over the
    batch, so a forecast does not depend on its batch mates.
    """
    if native.supports(x_gates, q, k, v, weight_hh):
        return native.mlstm_sequence(x_gates, q, k, v, weight_hh)
    return _mlstm_sequence_torch(x_gates, q, k, v, weight_hh)


def _slstm_sequence_torch(x_gates: torch.Tensor, weight_hh: torch.Tensor) -> torch.Tensor:
    batch, steps, _ = x_gates.shape
    hidden = weight_hh.shape[1]
    h = x_gates.new_zeros(batch, hidden)
    c = x_gates.new_zeros(batch, hidden)
    out = x_gates.new_empty(batch, steps, hidden)
    w_t = weight_hh.t()
    for t in range(steps):
        gates = torch.addmm(x_gates[:, t], h, w_t)
        i, f, g, o = gates.chunk(4, dim=1)
        i = torch.exp(i.clamp(-SLSTM_CLAMP, SLSTM_CLAMP))
        f = torch.exp(f.clamp(-SLSTM_CLAMP, SLSTM_CLAMP))
        c = f * c + i * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        out[:, t] = h
    return out


def _mlstm_sequence_torch(
    x_gates: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, weight_hh: torch.Tensor
) -> torch.Tensor:
    batch, steps, _ = x_gates.shape
    hidden = weight_hh.shape[1]
    h = x_gates.new_zeros(batch, hidden)
    memory = x_gates.new_zeros(batch, hidden, hidden)
    out = x_gates.new_empty(batch, steps, hidden)
    w_t = weight_hh.t()
    for t in range(steps):
        gates = torch.addmm(x_gates[:, t], h, w_t)
        i, f, o = gates.chunk(3, dim=1)
        i = torch.exp(i.clamp(MLSTM_CLAMP_LOW, MLSTM_CLAMP_HIGH))
        f = torch.exp(f.clamp(MLSTM_CLAMP_LOW, MLSTM_CLAMP_HIGH))
        # Row r of C is scaled by f[r] and gets i[r] * v[r] * k.
        memory = torch.baddbmm(memory * f[:, :, None], (i * v[:, t])[:, :, None], k[:, t, None, :])
        scale = 1.0 + memory.abs().amax(dim=(1, 2)) / MEMORY_SCALE
        memory = memory / scale[:, None, None]
        h = torch.sigmoid(o) * torch.bmm(q[:, t, None, :], memory)[:, 0, :]
        out[:, t] = h
    return out
