"""The xLSTM forecaster network. Its module tree and parameter names are exactly those of the
checkpoints the platform trained, which is what lets their ``model_state_dict`` load with
``strict=True``; renaming a module or reordering the gate rows breaks every one of them.
H = hidden_size, L = num_layers, N = num_blocks, K = predicted steps:

    x (B, T, input_size)
    -> input_projection: .0 Linear(input_size, H) -> .1 LayerNorm(H) -> GELU   (B, T, H)
    -> blocks.0 .. blocks.N-1, sLSTM at even index, mLSTM at odd index; each:
         seq = blocks.b.lstm.layers.0 .. L-1 run over time from zero state
               (cell l+1 reads cell l's h at the same step)
         y   = blocks.b.proj(blocks.b.norm(GELU(seq))) + y
    -> output_head on the last step: .0 Linear(H, H) -> GELU -> .2 Dropout -> .3 Linear(H, K)

Cell parameters (``blocks.b.lstm.layers.l.``), gates stacked in this order in the rows:
    sLSTM  weight_ih (4H, in), weight_hh (4H, H), bias (4H): gates i, f, g, o
    mLSTM  weight_ih (3H, in), weight_hh (3H, H), bias (3H): gates i, f, o;
           W_q.weight, W_k.weight, W_v.weight (H, in), no biases
The cell equations are in `cells.py`. The checkpoints store neither the window length nor the
block pattern: the kind of a block follows from its index. K is the number of rows of
``output_head.3.weight``, whatever the checkpoint's config says; the outputs are simple
returns against the window's last price.

The forward runs layer by layer over time: each cell's input projections for all steps are
one matrix multiply, only the recurrence is in the time loop (`cells.py`).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from alm_forecaster.cells import mlstm_sequence, project, slstm_sequence
from alm_forecaster.config import ModelConfig


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters) whose inference forward goes through `cells.project`:
    the compiled kernel when it runs the input, so no layer's result depends on the batch size."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bias is None:
            return F.linear(x, self.weight)
        return project(x, self.weight, self.bias)


class SLSTMCell(nn.Module):
    """Scalar-memory cell; gates i, f, g, o stacked in that order in the weight rows."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden_size, hidden_size))
        self.bias = nn.Parameter(torch.zeros(4 * hidden_size))
        _init_uniform(self, hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, in) -> h at every step (B, T, H)."""
        return slstm_sequence(project(x, self.weight_ih, self.bias), self.weight_hh)


class MLSTMCell(nn.Module):
    """Matrix-memory cell; gates i, f, o in the weight rows, plus query/key/value maps."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.weight_ih = nn.Parameter(torch.empty(3 * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(3 * hidden_size, hidden_size))
        self.bias = nn.Parameter(torch.zeros(3 * hidden_size))
        self.W_q = nn.Linear(input_size, hidden_size, bias=False)
        self.W_k = nn.Linear(input_size, hidden_size, bias=False)
        self.W_v = nn.Linear(input_size, hidden_size, bias=False)
        _init_uniform(self, hidden_size)
        self._fused: tuple[tuple, torch.Tensor, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, in) -> h at every step (B, T, H)."""
        weight, bias = self._input_weights()
        projected = project(x, weight, bias)
        gates, q, k, v = projected.split(
            [3 * self.hidden_size, self.hidden_size, self.hidden_size, self.hidden_size], dim=-1
        )
        return mlstm_sequence(gates, q, k, v, self.weight_hh)

    def _input_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Gates, q/sqrt(H), k/sqrt(H) and v as one (6H, in) matrix: one GEMM per sequence.

        Cached until any of the parameters changes (their version counters move on every
        in-place update, including ``load_state_dict``) or moves to another device.
        """
        params = (self.weight_ih, self.bias, self.W_q.weight, self.W_k.weight, self.W_v.weight)
        key = tuple((p.data_ptr(), _version(p), p.device, p.dtype) for p in params)
        if torch.is_grad_enabled() and any(p.requires_grad for p in params):
            return self._build_input_weights()
        if self._fused is None or self._fused[0] != key:
            # Ordinary tensors even under inference_mode: they carry the version counter the
            # compiled kernel keys its packed copy on (native.packed_weight).
            with torch.inference_mode(False), torch.no_grad():
                weight, bias = self._build_input_weights()
            self._fused = (key, weight, bias)
        return self._fused[1], self._fused[2]

    def _build_input_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        inv_sqrt_h = 1.0 / math.sqrt(self.hidden_size)
        weight = torch.cat(
            [self.weight_ih, self.W_q.weight * inv_sqrt_h, self.W_k.weight * inv_sqrt_h, self.W_v.weight]
        )
        bias = torch.cat([self.bias, self.bias.new_zeros(3 * self.hidden_size)])
        return weight, bias


class CellStack(nn.Module):
    """L cells run over the whole sequence one after another (layer by layer over time)."""

    def __init__(self, cell: type[nn.Module], hidden_size: int, num_layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(cell(hidden_size, hidden_size) for _ in range(num_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class XLSTMBlock(nn.Module):
    """A cell stack with a GELU -> LayerNorm -> Linear output and a residual connection."""

    def __init__(self, cell: type[nn.Module], config: ModelConfig) -> None:
        super().__init__()
        self.lstm = CellStack(cell, config.hidden_size, config.num_layers)
        self.norm = nn.LayerNorm(config.hidden_size)
        self.proj = Linear(config.hidden_size, config.hidden_size)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        seq = self.lstm(y)
        return self.dropout(self.proj(self.norm(F.gelu(seq)))) + y


class XLSTMForecaster(nn.Module):
    """Windows of embeddings (B, T, input_size) -> predicted returns (B, K)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        hidden = config.hidden_size
        self.input_projection = nn.Sequential(Linear(config.input_size, hidden), nn.LayerNorm(hidden), nn.GELU())
        self.blocks = nn.ModuleList(
            XLSTMBlock(SLSTMCell if kind == "s" else MLSTMCell, config) for kind in config.block_pattern
        )
        self.output_head = nn.Sequential(
            Linear(hidden, hidden), nn.GELU(), nn.Dropout(config.dropout), Linear(hidden, config.output_size)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.input_projection(x)
        for block in self.blocks:
            y = block(y)
        return self.output_head(y[:, -1])

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())


def _version(param: torch.Tensor) -> int | None:
    """In-place update counter; inference tensors (made under inference_mode) have none."""
    return None if param.is_inference() else param._version


def _init_uniform(cell: nn.Module, hidden_size: int) -> None:
    """LSTM-style U(-1/sqrt(H), 1/sqrt(H)) initialisation for every weight of a cell."""
    bound = 1.0 / math.sqrt(hidden_size)
    for name, param in cell.named_parameters():
        if name != "bias":
            nn.init.uniform_(param, -bound, bound)
