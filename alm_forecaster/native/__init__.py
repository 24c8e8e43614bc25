"""Optional compiled CPU kernel for the recurrent loops and the linear layers (`recurrence.cpp`).

The operators ``torch.ops.alm_forecaster.slstm_sequence`` and ``mlstm_sequence`` compute
exactly what ``alm_forecaster.cells._slstm_sequence_torch`` / ``_mlstm_sequence_torch`` do,
and ``linear`` what ``F.linear`` does, for float32 CPU tensors, without per-op overhead, with
the weights packed once for the kernel and the mLSTM memory kept in cache.

Two builds of the same sources, made ahead of time (``python -m alm_forecaster.native``, which
the set-up script, the image build and CI run) under ``alm_forecaster/native/_build/``:

    native     -march=native: every extension of the build machine (AVX-512 here); the build
               records them in cpu_features.txt, and a CPU that lacks one never loads it
    portable   the compiler's default target (x86-64 baseline: SSE2, no FMA): any CPU of the
               architecture; the same arithmetic up to float32 rounding, slower

The import loads the native build when this CPU has everything it was built for, else the
portable one (one warning: an image built on a newer CPU keeps a compiled kernel instead of
dying of SIGILL or falling back to PyTorch). It never compiles (slow, and this module is
imported inside server workers). When no build loads, the import logs one warning; when none
is built, the first forward that could have used one does (not the import: the build command
and the archive tools import this module without forecasting). Either way `supports` is False
and callers fall back to the PyTorch versions.

Precision: float32 (exact) unless a caller opts into bfloat16 weights and inputs for a block
of code (``with native.precision("bf16"):``; the Forecaster's ``precision`` setting): the
native build on a CPU with AVX512-BF16 only (`has_bf16`), products summed in float32, the
cell state math in float32. Its error against float32 is measured in BENCHMARKS.md.

``ALM_FORECASTER_NATIVE`` in the environment: ``0`` turns the kernel off (checked on every
call, and no library is then loaded at import either); ``portable`` loads only the portable
build (to compare the two, or to rule the native one out).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

#: Name of the built library (``_build/<LIBRARY_NAME>.so``) and of the operator namespace's module.
LIBRARY_NAME = "alm_forecaster_native"
ENV_SWITCH = "ALM_FORECASTER_NATIVE"

_HERE = Path(__file__).resolve().parent
SOURCES = (_HERE / "recurrence.cpp",)
HEADERS = (_HERE / "kernels.h", _HERE / "panels.h", _HERE / "simd.h")
BUILD_DIR = _HERE / "_build"


@dataclass(frozen=True)
class Variant:
    """One build of the sources: its name, library file stem, directory and target flags."""

    name: str
    library: str
    directory: Path
    target_flags: tuple[str, ...]


#: In the order the import tries them.
VARIANTS = (
    Variant("native", LIBRARY_NAME, BUILD_DIR, ("-march=native",)),
    Variant("portable", f"{LIBRARY_NAME}_portable", BUILD_DIR / "portable", ()),
)
#: No -ffast-math (exp/tanh stay exact). -fopenmp: at::parallel_for is a header template; without
#: OpenMP it silently runs on one thread. The library then links libgomp.so.1, which resolves to
#: the copy torch has already loaded.
EXTRA_CFLAGS = ("-O3", "-fopenmp", "-Wall")
EXTRA_LDFLAGS = ("-fopenmp",)
#: Beside the library: the build machine's instruction-set extensions. -march=native may use any
#: of them, so a library (an archive, an image) taken to a CPU without one is not loaded there.
CPU_FEATURES_FILE = "cpu_features.txt"
ISA_PREFIXES = ("sse", "ssse", "avx", "fma", "f16c", "bmi", "amx", "vpclmul", "vaes", "gfni", "sha_ni", "adx", "abm")

_loaded = False
_variant: str | None = None
_load_error: str | None = None
#: The library found missing at import, until a forward has reported it.
_missing: Path | None = None


def is_loaded() -> bool:
    """Whether the operators are registered in this process."""
    return _loaded


def variant() -> str | None:
    """Which build is loaded: "native", "portable", or None."""
    return _variant


def load_error() -> str | None:
    """Why the library is not loaded (None when it is, or when loading was not tried)."""
    return _load_error


def supports(x: torch.Tensor, *weights: torch.Tensor) -> bool:
    """Whether the compiled kernel can run this input with these weights.

    True only when the library is loaded, ``x`` is a float32 CPU (strided) tensor, the
    environment variable ``ALM_FORECASTER_NATIVE`` is not "0", and no gradient is being
    recorded through ``x`` or any of ``weights`` (the kernel has no backward; training uses the
    PyTorch path: a layer whose input needs no gradient still has weights that do).
    """
    if not (
        isinstance(x, torch.Tensor)
        and x.dtype == torch.float32
        and x.device.type == "cpu"
        and x.layout == torch.strided
        and not (torch.is_grad_enabled() and any(t.requires_grad for t in (x, *weights)))
    ):
        return False
    if not _loaded:
        _report_missing()
        return False
    return _enabled()


def _report_missing() -> None:
    """One warning per process, at the first input the kernel would have run."""
    global _missing
    if _missing is not None:
        logger.warning(
            "alm_forecaster native kernel not built (%s missing; run python -m alm_forecaster.native); "
            "using the PyTorch recurrences",
            _missing,
        )
        _missing = None


def slstm_sequence(x_gates: torch.Tensor, weight_hh: torch.Tensor) -> torch.Tensor:
    """sLSTM over time from zero state: x_gates (B, T, 4H), weight_hh (4H, H) -> h (B, T, H)."""
    return torch.ops.alm_forecaster.slstm_sequence(x_gates, weight_hh, packed_weight(weight_hh))


def mlstm_sequence(
    x_gates: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, weight_hh: torch.Tensor
) -> torch.Tensor:
    """mLSTM over time from zero state, memory normalised per sample.

    x_gates (B, T, 3H); q, k (already divided by sqrt(H)) and v (B, T, H); weight_hh (3H, H).
    Returns h (B, T, H).
    """
    return torch.ops.alm_forecaster.mlstm_sequence(x_gates, q, k, v, weight_hh, packed_weight(weight_hh))


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """bias + x @ weight.T over the last dimension of x, like ``F.linear``; each row's result
    is independent of the other rows (no BLAS kernel chosen by the batch size)."""
    return torch.ops.alm_forecaster.linear(x, weight, packed_weight(weight), bias)


#: The precisions `precision` accepts.
PRECISIONS = ("fp32", "bf16")
_precision: ContextVar[str] = ContextVar("alm_forecaster_precision", default="fp32")


def has_bf16() -> bool:
    """Whether the loaded build has the bfloat16 products (native build, AVX512-BF16)."""
    return _loaded and bool(torch.ops.alm_forecaster.has_bf16())


@contextmanager
def precision(name: str) -> Iterator[None]:
    """Products in the block use ``name``'s weights: "fp32" (exact, the default) or "bf16"."""
    if name not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {name!r}")
    if name == "bf16" and not has_bf16():
        raise RuntimeError(f"bf16 needs the native kernel on a CPU with AVX512-BF16; loaded build: {variant()}")
    token = _precision.set(name)
    try:
        yield
    finally:
        _precision.reset(token)


def packed_weight(weight: torch.Tensor) -> torch.Tensor:
    """The kernel's layout of a weight (N, K) in the current `precision`: panels of 64 columns
    of its transpose.

    Packing reads and writes the whole weight, as much as a batch-1 step costs, so the packed
    copy (one per precision used) is kept on the weight tensor itself and made again only when
    the weight's storage or its in-place update counter (``load_state_dict``, an optimiser
    step) changes. Inference tensors have no counter: theirs is packed on every call.
    """
    bf16 = _precision.get() == "bf16"
    key = None if weight.is_inference() else (weight.data_ptr(), weight._version)
    cache = getattr(weight, _PACKED_ATTRIBUTE, None)
    if cache is None or cache[0] != key:
        cache = (key, {})
    if bf16 not in cache[1]:
        cache[1][bf16] = torch.ops.alm_forecaster.pack_weight(weight, bf16)
        if key is not None:
            setattr(weight, _PACKED_ATTRIBUTE, cache)
    return cache[1][bf16]


_PACKED_ATTRIBUTE = "_alm_forecaster_packed"


def _load_at_import() -> None:
    global _load_error, _missing
    setting = os.environ.get(ENV_SWITCH, "1").strip()
    if setting == "0":
        _load_error = f"disabled by {ENV_SWITCH}=0"
        return
    candidates = [v for v in VARIANTS if v.name == "portable"] if setting == "portable" else list(VARIANTS)
    refused = []
    for candidate in candidates:
        path = library_path(candidate.name)
        if not path.is_file():
            continue
        missing = missing_cpu_features(path.with_name(CPU_FEATURES_FILE), cpu_features())
        if missing:
            # -march=native code would die of SIGILL on this CPU: refuse it while we still can.
            refused.append(f"{path} was built for a CPU with {', '.join(missing)}, which this one lacks")
            continue
        if not _load(path, candidate.name):
            return
        if refused:
            logger.warning("alm_forecaster native kernel: %s; using the portable build (slower)", refused[0])
        newest_source = max(src.stat().st_mtime for src in SOURCES + HEADERS if src.is_file())
        if path.stat().st_mtime < newest_source:
            logger.warning("alm_forecaster native kernel %s is older than its source; rebuild it", path)
        return
    if refused:
        _load_error = "; ".join(refused) + " (and no portable build)"
        logger.warning("alm_forecaster native kernel not loaded (%s); using the PyTorch recurrences", _load_error)
        return
    _load_error = f"{library_path(candidates[0].name)} not built"
    _missing = library_path(candidates[0].name)


def cpu_features() -> set[str] | None:
    """This CPU's instruction-set extensions (Linux's /proc/cpuinfo flags); None when unknown."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    line = next((line for line in text.splitlines() if line.startswith("flags")), None)
    if line is None:
        return None
    return {flag for flag in line.partition(":")[2].split() if flag.startswith(ISA_PREFIXES)}


def missing_cpu_features(record: Path, current: set[str] | None) -> list[str]:
    """The extensions the build machine had (``record``, written by `_compile`) that this CPU
    lacks; empty when either side is unknown."""
    if current is None or not record.is_file():
        return []
    return sorted(set(record.read_text().split()) - current)


def _enabled() -> bool:
    return os.environ.get(ENV_SWITCH, "1").strip() != "0"


def library_path(name: str = "native") -> Path:
    """Where a build's shared library is (whether or not it exists yet)."""
    build = _by_name(name)
    suffix = ".pyd" if sys.platform == "win32" else ".so"
    return build.directory / f"{build.library}{suffix}"


def _by_name(name: str) -> Variant:
    for candidate in VARIANTS:
        if candidate.name == name:
            return candidate
    raise ValueError(f"unknown build {name!r}; expected one of {[v.name for v in VARIANTS]}")


def _load(path: Path, name: str) -> bool:
    global _loaded, _load_error, _variant
    try:
        torch.ops.load_library(str(path))
    except (OSError, RuntimeError) as exc:
        _load_error = f"{path}: {exc}"
        logger.warning("alm_forecaster native kernel failed to load (%s); using the PyTorch recurrences", _load_error)
        return False
    _loaded, _load_error, _variant = True, None, name
    _register_fake()
    return True


def _register_fake() -> None:
    """Shape functions, so the operators also trace under torch.compile / torch.export."""

    def fake_slstm(x_gates, weight_hh, weight_packed):
        return x_gates.new_empty(x_gates.shape[0], x_gates.shape[1], weight_hh.shape[1])

    def fake_mlstm(x_gates, q, k, v, weight_hh, weight_packed):
        return x_gates.new_empty(x_gates.shape[0], x_gates.shape[1], weight_hh.shape[1])

    def fake_linear(x, weight, weight_packed, bias):
        return x.new_empty(*x.shape[:-1], weight.shape[0])

    def fake_pack(weight, bf16=False):
        panels = -(-weight.shape[0] // 64)
        if bf16:
            return weight.new_empty(panels, -(-weight.shape[1] // 2), 128, dtype=torch.bfloat16)
        return weight.new_empty(panels, weight.shape[1], 64)

    try:
        torch.library.register_fake("alm_forecaster::slstm_sequence")(fake_slstm)
        torch.library.register_fake("alm_forecaster::mlstm_sequence")(fake_mlstm)
        torch.library.register_fake("alm_forecaster::linear")(fake_linear)
        torch.library.register_fake("alm_forecaster::pack_weight")(fake_pack)
    except Exception as exc:  # noqa: BLE001 - optional nicety, never fatal
        logger.debug("could not register fake kernels for alm_forecaster ops: %s", exc)


def build(verbose: bool = False, names: tuple[str, ...] = ("native", "portable")) -> Path:
    """Compile the builds into ``_build/`` (each a no-op when it is up to date); returns the
    native library's path.

    Only one build can be registered in a process: the first one compiled here is loaded into
    this process when none is loaded yet; every other compiles in a child process and takes
    effect in the next process. Raises RuntimeError on failure.
    """
    for name in names:
        if _loaded:
            _compile_in_child(name, verbose)
            continue
        try:
            path = _compile(_by_name(name), verbose)
        except Exception as exc:
            raise RuntimeError(f"building the alm_forecaster native kernel ({name}) failed: {exc}") from exc
        _load(path, name)
    return library_path()


def _compile_in_child(name: str, verbose: bool) -> None:
    """``python -m alm_forecaster.native --only NAME`` (`__main__.py`), in its own process.

    The child must not load a build at import, or it could not load the new one either: the
    switch is off in its environment. It runs in the directory that holds this copy of the
    package, which ``-m`` puts first on its import path, so it builds these sources.
    """
    env = dict(os.environ, **{ENV_SWITCH: "0"})
    command = [sys.executable, "-m", __name__, "--only", name] + (["--verbose"] if verbose else [])
    started = time.perf_counter()
    proc = subprocess.run(command, env=env, cwd=_HERE.parent.parent, capture_output=not verbose, text=True)
    if proc.returncode != 0:
        detail = (proc.stderr or "")[-4000:] if not verbose else "see the output above"
        raise RuntimeError(f"building the alm_forecaster native kernel ({name}) failed:\n{detail}")
    logger.info(
        "built %s in %.1f s; this process keeps the build it had loaded",
        library_path(name),
        time.perf_counter() - started,
    )


def _compile(build: Variant, verbose: bool) -> Path:
    """Compile one build (ninja skips it when up to date); cpp_extension also loads it."""
    from torch.utils import cpp_extension

    # The ninja binary comes from the pinned PyPI wheel, in the environment's bin directory,
    # which is not on PATH when the interpreter is called by its path (.venv/bin/python ...).
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = os.pathsep.join(filter(None, [bin_dir, os.environ.get("PATH")]))
    build.directory.mkdir(parents=True, exist_ok=True)
    result = cpp_extension.load(
        name=build.library,
        sources=[str(src) for src in SOURCES],
        extra_cflags=list(EXTRA_CFLAGS + build.target_flags),
        extra_ldflags=list(EXTRA_LDFLAGS),
        build_directory=str(build.directory),
        is_python_module=False,
        verbose=verbose,
    )
    built = Path(result) if isinstance(result, (str, os.PathLike)) else library_path(build.name)
    record = built.with_name(CPU_FEATURES_FILE)
    features = cpu_features()
    if build.target_flags and features is not None:
        record.write_text(" ".join(sorted(features)) + "\n")
    else:
        record.unlink(missing_ok=True)  # the compiler's default target runs on any CPU of the architecture
    return built


_load_at_import()
