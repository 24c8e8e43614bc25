"""Safe, strict loading of the platform's checkpoints.

A checkpoint is a ``torch.save``d dict with ``model_state_dict`` (tensors) and ``config``
(plain values); checkpoints made by this project's trainers may add ``metadata``,
``feature_pipeline`` and ``quantile_head`` (plain values and tensors too). Only ``torch.load(weights_only=True)`` is
ever used: a file that needs arbitrary unpickling is refused before anything in it runs.
Every error names the file and exactly what is wrong with it.
"""

from __future__ import annotations

import hashlib
import io
import logging
import pickle
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from alm_forecaster.config import DEFAULT_SEQ_LEN, ModelConfig
from alm_forecaster.errors import CheckpointError
from alm_forecaster.heads import QuantileHead
from alm_forecaster.model import XLSTMForecaster

log = logging.getLogger(__name__)

REQUIRED_KEYS = ("model_state_dict", "config")
OPTIONAL_KEYS = ("metadata", "feature_pipeline", "quantile_head")
_SHAPE_FIELDS = ("input_size", "hidden_size", "num_layers", "num_blocks")


@dataclass
class LoadedCheckpoint:
    """A validated model in eval mode, with what the file said about itself."""

    path: Path
    sha256: str
    model: XLSTMForecaster
    config: ModelConfig
    metadata: dict = field(default_factory=dict)
    feature_pipeline: dict | None = None
    warnings: list[str] = field(default_factory=list)
    quantile_head: QuantileHead | None = None


def load_checkpoint(path: str | Path) -> LoadedCheckpoint:
    """Load and validate ``path``; raises `CheckpointError` naming the file and the fault."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read the file: {exc.strerror or exc}.") from None
    payload = _safe_load(raw, path)
    return build_checkpoint(payload, path, hashlib.sha256(raw).hexdigest())


def build_checkpoint(payload: object, path: Path, sha256: str = "") -> LoadedCheckpoint:
    """Validate an already-loaded checkpoint object (tests and the trainer use this too)."""
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path}: not a checkpoint: expected a dict, found {type(payload).__name__}.")
    missing = [key for key in REQUIRED_KEYS if key not in payload]
    if missing:
        raise CheckpointError(f"{path}: not a checkpoint: missing {', '.join(repr(k) for k in missing)}.")
    state, declared = payload["model_state_dict"], payload["config"]
    if not isinstance(declared, dict):
        raise CheckpointError(f"{path}: 'config' must be a dict, found {type(declared).__name__}.")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: 'model_state_dict' must map names to tensors.")
    metadata = payload.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise CheckpointError(f"{path}: 'metadata' must be a dict, found {type(metadata).__name__}.")
    pipeline = payload.get("feature_pipeline")
    if pipeline is not None and not isinstance(pipeline, dict):
        raise CheckpointError(f"{path}: 'feature_pipeline' must be a dict, found {type(pipeline).__name__}.")
    extra = sorted(str(k) for k in payload if k not in REQUIRED_KEYS + OPTIONAL_KEYS)
    if extra:
        log.info("%s: ignoring extra checkpoint keys %s", path, extra)

    config, warnings = _reconcile_config(declared, state, metadata, path)
    _check_finite(state, path)
    model = _empty_model(config)
    _check_tensors(model, state, path)
    model.load_state_dict(state, strict=True)
    model.eval()
    for warning in warnings:
        log.warning("%s: %s", path, warning)
    head = None
    if payload.get("quantile_head") is not None:
        try:
            head = QuantileHead.from_state(payload["quantile_head"], config.output_size)
        except CheckpointError as exc:
            raise CheckpointError(f"{path}: {exc}") from None
    return LoadedCheckpoint(path, sha256, model, config, metadata, pipeline, warnings, head)


def _safe_load(raw: bytes, path: Path) -> object:
    try:
        return torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        detail = _unpickler_detail(str(exc))
        if "global" in detail.lower() or "class" in detail.lower():
            raise CheckpointError(
                f"{path}: refused: the file needs arbitrary unpickling, which is never done for model files "
                f"(only tensors and plain values are allowed; nothing in it was run). Detail: {detail}"
            ) from None
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({detail}).") from None
    except Exception as exc:  # torch raises RuntimeError, EOFError, zipfile errors... for a damaged file
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({type(exc).__name__}: {exc}).") from None


def _unpickler_detail(message: str) -> str:
    """The one useful line of torch's long weights-only refusal message."""
    _, found, rest = message.partition("WeightsUnpickler error:")
    detail = rest.split("Check the documentation")[0] if found else message
    return " ".join(detail.split()) or "unpickling failed"


def _reconcile_config(
    declared: dict, state: dict[str, torch.Tensor], metadata: dict, path: Path
) -> tuple[ModelConfig, list[str]]:
    """The config the weights define; a declared shape field that contradicts them is an error."""
    found = _shape_from_weights(state, path)
    for name in _SHAPE_FIELDS:
        if name not in declared:
            raise CheckpointError(f"{path}: config is missing {name!r}.")
        value = declared[name]
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise CheckpointError(f"{path}: config {name!r} must be a positive integer, got {value!r}.")
        if value != found[name]:
            raise CheckpointError(f"{path}: config says {name}={value} but the weights have {name}={found[name]}.")
    steps = found["output_size"]
    warnings = [
        f"config says {name}={declared[name]} but the head predicts {steps} steps; serving {steps}"
        for name in ("output_size", "prediction_horizon")
        if name in declared and declared[name] != steps
    ]
    seq_len = metadata.get("seq_len", DEFAULT_SEQ_LEN)
    if not isinstance(seq_len, int) or isinstance(seq_len, bool) or seq_len <= 0:
        raise CheckpointError(f"{path}: metadata 'seq_len' must be a positive integer, got {seq_len!r}.")
    dropout = declared.get("dropout", 0.0)
    config = ModelConfig(
        input_size=found["input_size"],
        hidden_size=found["hidden_size"],
        num_layers=found["num_layers"],
        num_blocks=found["num_blocks"],
        output_size=steps,
        dropout=float(dropout) if isinstance(dropout, (int, float)) else 0.0,
        seq_len=seq_len,
        declared=dict(declared),
    )
    return config, warnings


def _shape_from_weights(state: dict[str, torch.Tensor], path: Path) -> dict[str, int]:
    def shape(name: str, dims: int) -> torch.Size:
        if name not in state:
            raise CheckpointError(f"{path}: missing tensor {name!r}.")
        if state[name].dim() != dims:
            raise CheckpointError(
                f"{path}: tensor {name!r} has shape {tuple(state[name].shape)}, expected {dims} dimensions."
            )
        return state[name].shape

    hidden, input_size = shape("input_projection.0.weight", 2)
    blocks = {int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))}
    layers = {int(m.group(1)) for k in state if (m := re.match(r"blocks\.\d+\.lstm\.layers\.(\d+)\.", k))}
    if not blocks or not layers:
        raise CheckpointError(f"{path}: no xLSTM block tensors ('blocks.N.lstm.layers.L.*') found.")
    steps = shape("output_head.3.weight", 2)[0]
    return {
        "input_size": input_size,
        "hidden_size": hidden,
        "num_layers": max(layers) + 1,
        "num_blocks": max(blocks) + 1,
        "output_size": steps,
    }


def _check_finite(state: dict[str, torch.Tensor], path: Path) -> None:
    for name, tensor in state.items():
        if not tensor.is_floating_point():
            raise CheckpointError(f"{path}: tensor {name!r} has dtype {tensor.dtype}, expected floating point.")
        # Screen first: NaN and inf propagate through a sum, so a finite sum means every value
        # is finite, and one reduction is much cheaper than an element-wise mask; the exact
        # check runs only when the screen fails (a non-finite value, or a sum that overflowed).
        if torch.isfinite(tensor.sum()):
            continue
        if not torch.isfinite(tensor).all():
            bad = int((~torch.isfinite(tensor)).sum())
            raise CheckpointError(f"{path}: tensor {name!r} has {bad} non-finite values (NaN or inf).")


def _empty_model(config: ModelConfig) -> XLSTMForecaster:
    """The network with uninitialised CPU parameters: the strict ``load_state_dict`` that follows
    overwrites every one of them, so the random initialisation, which every worker would pay at
    start-up, is skipped. Built on the meta device, then each parameter is replaced by an empty
    CPU tensor (``Module.to_empty`` would import sympy on its first call, a slow import a
    worker does not otherwise need). Falls back to a normal construction if the module ever
    holds buffers or shared parameters."""
    with torch.device("meta"):
        model = XLSTMForecaster(config)
    params = list(model.named_parameters(remove_duplicate=False))
    if any(True for _ in model.buffers()) or len({id(p) for _, p in params}) != len(params):
        return XLSTMForecaster(config)
    for module in model.modules():
        for name, param in list(module.named_parameters(recurse=False)):
            empty = torch.empty(param.shape, dtype=param.dtype, device="cpu")
            setattr(module, name, torch.nn.Parameter(empty, requires_grad=param.requires_grad))
    return model


def _check_tensors(model: XLSTMForecaster, state: dict[str, torch.Tensor], path: Path) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    problems = []
    if missing:
        problems.append(f"missing tensors {_names(missing)}")
    if unexpected:
        problems.append(f"unexpected tensors {_names(unexpected)}")
    for name in sorted(set(expected) & set(state)):
        if expected[name].shape != state[name].shape:
            problems.append(
                f"tensor {name!r} has shape {tuple(state[name].shape)}, expected {tuple(expected[name].shape)}"
            )
    if problems:
        raise CheckpointError(f"{path}: weights do not match the config: {'; '.join(problems)}.")


def _names(names: list[str], limit: int = 6) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown if len(names) <= limit else f"{shown} and {len(names) - limit} more"


def load_step_times(path: str | Path) -> dict[str, float]:
    """`load_checkpoint`'s steps one by one on a valid checkpoint, with ``time.time()`` read after
    each (read_file, sha256, torch_load, finite_check, build_model, load_state_dict): the
    benchmark's worker start-up profile shows which step of a worker's start costs what."""
    path = Path(path)
    marks = {}
    raw = path.read_bytes()
    marks["read_file"] = time.time()
    hashlib.sha256(raw).hexdigest()
    marks["sha256"] = time.time()
    payload = _safe_load(raw, path)
    marks["torch_load"] = time.time()
    state, declared = payload["model_state_dict"], payload["config"]
    config, _ = _reconcile_config(declared, state, payload.get("metadata") or {}, path)
    _check_finite(state, path)
    marks["finite_check"] = time.time()
    model = _empty_model(config)
    marks["build_model"] = time.time()
    _check_tensors(model, state, path)
    model.load_state_dict(state, strict=True)
    marks["load_state_dict"] = time.time()
    return marks
