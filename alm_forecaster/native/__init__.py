"""Optional compiled CPU kernel for the two recurrent loops (`recurrence.cpp`).

The operators ``torch.ops.alm_forecaster.slstm_sequence`` and ``mlstm_sequence`` compute
exactly what ``alm_forecaster.cells._slstm_sequence_torch`` / ``_mlstm_sequence_torch`` do,
for float32 CPU tensors, without per-op overhead and with the mLSTM memory kept in cache.

The shared library is built ahead of time (``python -m alm_forecaster.native``, which
``scripts/build_native.py``, the set-up script and CI run) into ``alm_forecaster/native/_build/``.
Importing this module only *loads* an existing build; it never compiles (compiling is slow and
this module is imported inside server workers). When the library fails to load, the import logs
one warning; when it is missing, the first forward that could have used it does (not the
import: the build command and the archive tools import this module without forecasting).
Either way `supports` is False and callers fall back to the PyTorch versions.

``ALM_FORECASTER_NATIVE=0`` in the environment turns the kernel off (checked on every call,
and the library is then not loaded at import either).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

#: Name of the built library (``_build/<LIBRARY_NAME>.so``) and of the operator namespace's module.
LIBRARY_NAME = "alm_forecaster_native"
ENV_SWITCH = "ALM_FORECASTER_NATIVE"

_HERE = Path(__file__).resolve().parent
SOURCES = (_HERE / "recurrence.cpp",)
BUILD_DIR = _HERE / "_build"
#: -march=native: the library is built on the machine that runs it. No -ffast-math (exp/tanh stay exact).
#: -fopenmp: at::parallel_for is a header template; without OpenMP it silently runs on one thread.
#: The library then links libgomp.so.1, which resolves to the copy torch has already loaded.
EXTRA_CFLAGS = ("-O3", "-march=native", "-fopenmp", "-Wall")
EXTRA_LDFLAGS = ("-fopenmp",)
#: Beside the library: the build machine's instruction-set extensions. -march=native may use any
#: of them, so a library (an archive, an image) taken to a CPU without one is not loaded there.
CPU_FEATURES_FILE = "cpu_features.txt"
ISA_PREFIXES = ("sse", "ssse", "avx", "fma", "f16c", "bmi", "amx", "vpclmul", "vaes", "gfni", "sha_ni", "adx", "abm")

_loaded = False
_load_error: str | None = None
#: The library found missing at import, until a forward has reported it.
_missing: Path | None = None


def is_loaded() -> bool:
    """Whether the operators are registered in this process."""
    return _loaded


def load_error() -> str | None:
    """Why the library is not loaded (None when it is, or when loading was not tried)."""
    return _load_error


def supports(x: torch.Tensor) -> bool:
    """Whether the compiled kernel can run this input.

    True only when the library is loaded, ``x`` is a float32 CPU (strided) tensor, the
    environment variable ``ALM_FORECASTER_NATIVE`` is not "0", and no gradient is being
    recorded through ``x`` (the kernel has no backward; training uses the PyTorch path).
    """
    if not (
        isinstance(x, torch.Tensor)
        and x.dtype == torch.float32
        and x.device.type == "cpu"
        and x.layout == torch.strided
        and not (x.requires_grad and torch.is_grad_enabled())
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


def packed_weight(weight: torch.Tensor) -> torch.Tensor:
    """The kernel's layout of a weight (N, K): panels of 64 columns of its transpose.

    Packing reads and writes the whole weight, as much as a batch-1 step costs, so the packed
    copy is kept on the weight tensor itself and made again only when the weight's storage or
    its in-place update counter (``load_state_dict``, an optimiser step) changes. Inference
    tensors have no counter: theirs is packed on every call.
    """
    key = None if weight.is_inference() else (weight.data_ptr(), weight._version)
    cached = getattr(weight, _PACKED_ATTRIBUTE, None)
    if key is not None and cached is not None and cached[0] == key:
        return cached[1]
    packed = torch.ops.alm_forecaster.pack_weight(weight)
    if key is not None:
        setattr(weight, _PACKED_ATTRIBUTE, (key, packed))
    return packed


_PACKED_ATTRIBUTE = "_alm_forecaster_packed"


def _load_at_import() -> None:
    global _load_error, _missing
    if not _enabled():
        _load_error = f"disabled by {ENV_SWITCH}=0"
        return
    path = library_path()
    if not path.is_file():
        _load_error = f"{path} not built"
        _missing = path
        return
    missing = missing_cpu_features(path.with_name(CPU_FEATURES_FILE), cpu_features())
    if missing:
        # -march=native code would die of SIGILL on this CPU: refuse it while we still can.
        _load_error = f"{path} was built for a CPU with {', '.join(missing)}, which this one lacks"
        logger.warning("alm_forecaster native kernel not loaded (%s); using the PyTorch recurrences", _load_error)
        return
    if _load(path):
        newest_source = max(src.stat().st_mtime for src in SOURCES if src.is_file())
        if path.stat().st_mtime < newest_source:
            logger.warning("alm_forecaster native kernel %s is older than its source; rebuild it", path)


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


def library_path() -> Path:
    """Where the built shared library is (whether or not it exists yet)."""
    suffix = ".pyd" if sys.platform == "win32" else ".so"
    return BUILD_DIR / f"{LIBRARY_NAME}{suffix}"


def _load(path: Path) -> bool:
    global _loaded, _load_error
    try:
        torch.ops.load_library(str(path))
    except (OSError, RuntimeError) as exc:
        _load_error = f"{path}: {exc}"
        logger.warning("alm_forecaster native kernel failed to load (%s); using the PyTorch recurrences", _load_error)
        return False
    _loaded, _load_error = True, None
    _register_fake()
    return True


def _register_fake() -> None:
    """Shape functions, so the operators also trace under torch.compile / torch.export."""

    def fake_slstm(x_gates, weight_hh):
        return x_gates.new_empty(x_gates.shape[0], x_gates.shape[1], weight_hh.shape[1])

    def fake_mlstm(x_gates, q, k, v, weight_hh):
        return x_gates.new_empty(x_gates.shape[0], x_gates.shape[1], weight_hh.shape[1])

    try:
        torch.library.register_fake("alm_forecaster::slstm_sequence")(fake_slstm)
        torch.library.register_fake("alm_forecaster::mlstm_sequence")(fake_mlstm)
    except Exception as exc:  # noqa: BLE001 - optional nicety, never fatal
        logger.debug("could not register fake kernels for alm_forecaster ops: %s", exc)


def build(verbose: bool = False) -> Path:
    """Compile the library into ``_build/`` (a no-op when it is up to date).

    Loads it into this process if no version of it is loaded yet. When one already is (a
    library cannot be registered twice in one process), the compilation runs in a child
    process and the new build takes effect in the next process. Raises RuntimeError on failure.
    """
    global _loaded, _load_error
    if _loaded:
        _compile_in_child(verbose)
        return library_path()
    try:
        path = _compile(verbose)
    except Exception as exc:
        raise RuntimeError(f"building the alm_forecaster native kernel failed: {exc}") from exc
    _loaded, _load_error = True, None
    _register_fake()
    return path


def _compile_in_child(verbose: bool) -> None:
    """``python -m alm_forecaster.native`` (`__main__.py`), which compiles in its own process.

    The child must not load the old build at import, or it could not compile either: the
    switch is off in its environment. It runs in the directory that holds this copy of the
    package, which ``-m`` puts first on its import path, so it builds these sources.
    """
    env = dict(os.environ, **{ENV_SWITCH: "0"})
    command = [sys.executable, "-m", __name__] + (["--verbose"] if verbose else [])
    started = time.perf_counter()
    proc = subprocess.run(command, env=env, cwd=_HERE.parent.parent, capture_output=not verbose, text=True)
    if proc.returncode != 0:
        detail = (proc.stderr or "")[-4000:] if not verbose else "see the output above"
        raise RuntimeError(f"building the alm_forecaster native kernel failed:\n{detail}")
    logger.info(
        "rebuilt %s in %.1f s; this process keeps the version it had loaded",
        library_path(),
        time.perf_counter() - started,
    )


def _compile(verbose: bool) -> Path:
    """Compile (ninja skips it when up to date) and load into this process."""
    from torch.utils import cpp_extension

    # The ninja binary comes from the pinned PyPI wheel, in the environment's bin directory,
    # which is not on PATH when the interpreter is called by its path (.venv/bin/python ...).
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = os.pathsep.join(filter(None, [bin_dir, os.environ.get("PATH")]))
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    result = cpp_extension.load(
        name=LIBRARY_NAME,
        sources=[str(src) for src in SOURCES],
        extra_cflags=list(EXTRA_CFLAGS),
        extra_ldflags=list(EXTRA_LDFLAGS),
        build_directory=str(BUILD_DIR),
        is_python_module=False,
        verbose=verbose,
    )
    built = Path(result) if isinstance(result, (str, os.PathLike)) else library_path()
    features = cpu_features()
    if features is not None:
        built.with_name(CPU_FEATURES_FILE).write_text(" ".join(sorted(features)) + "\n")
    return built


_load_at_import()
