"""The plain step-by-step xLSTM forward: the numeric reference the fast forward is checked against.

Time step by time step, cell by cell, every projection recomputed inside the loop, the cell
equations written out literally as `alm_forecaster.cells` states them (per-sample memory
normalisation). It reads the model's parameters by name (the layout in `alm_forecaster.model`)
and shares no code with the fast forward, so the fast path is checked against an independent
implementation.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F


def oracle_forward(
    state: dict[str, torch.Tensor], num_blocks: int, num_layers: int, x: torch.Tensor, batch_wide: bool = False
) -> torch.Tensor:
    """x (B, T, input_size) -> (B, K) using the state dict ``state``.

    ``batch_wide=True`` normalises the mLSTM memory by one max|C'| over the whole batch, as the
    platform's original service did, so tests can show that the batch-invariance check would
    catch a forecast that depends on its batch mates.
    """
    p = state
    hidden = p["input_projection.0.weight"].shape[0]
    y = F.linear(x, p["input_projection.0.weight"], p["input_projection.0.bias"])
    y = F.gelu(F.layer_norm(y, (hidden,), p["input_projection.1.weight"], p["input_projection.1.bias"]))
    batch, steps, _ = y.shape
    for b in range(num_blocks):
        pre = f"blocks.{b}."
        is_slstm = b % 2 == 0
        h = [y.new_zeros(batch, hidden) for _ in range(num_layers)]
        c = [y.new_zeros(batch, hidden) for _ in range(num_layers)]
        mem = [y.new_zeros(batch, hidden, hidden) for _ in range(num_layers)]
        seq = []
        for t in range(steps):
            inp = y[:, t]
            for layer in range(num_layers):
                cp = f"{pre}lstm.layers.{layer}."
                gates = inp @ p[cp + "weight_ih"].T + p[cp + "bias"] + h[layer] @ p[cp + "weight_hh"].T
                if is_slstm:
                    i, f, g, o = gates.chunk(4, dim=1)
                    i = torch.exp(torch.clamp(i, -10, 10))
                    f = torch.exp(torch.clamp(f, -10, 10))
                    c[layer] = f * c[layer] + i * torch.tanh(g)
                    h[layer] = torch.sigmoid(o) * torch.tanh(c[layer])
                else:
                    i, f, o = gates.chunk(3, dim=1)
                    i = torch.exp(torch.clamp(i, -15, 8))
                    f = torch.exp(torch.clamp(f, -15, 8))
                    o = torch.sigmoid(o)
                    q = (inp @ p[cp + "W_q.weight"].T) / math.sqrt(hidden)
                    k = (inp @ p[cp + "W_k.weight"].T) / math.sqrt(hidden)
                    v = inp @ p[cp + "W_v.weight"].T
                    new = f[:, :, None] * mem[layer] + i[:, :, None] * (v[:, :, None] * k[:, None, :])
                    if batch_wide:
                        new = new / (1 + new.abs().max() / 10)
                    for s in range(batch if not batch_wide else 0):  # per sample, one at a time
                        new[s] = new[s] / (1 + new[s].abs().max() / 10)
                    mem[layer] = new
                    h[layer] = o * (q[:, None, :] @ new)[:, 0, :]
                inp = h[layer]
            seq.append(inp)
        out = torch.stack(seq, dim=1)
        out = F.layer_norm(F.gelu(out), (hidden,), p[pre + "norm.weight"], p[pre + "norm.bias"])
        y = F.linear(out, p[pre + "proj.weight"], p[pre + "proj.bias"]) + y
    z = F.gelu(F.linear(y[:, -1], p["output_head.0.weight"], p["output_head.0.bias"]))
    return F.linear(z, p["output_head.3.weight"], p["output_head.3.bias"])
