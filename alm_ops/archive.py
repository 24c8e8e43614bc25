"""Build self-contained TorchServe archives (.mar) of the xLSTM forecaster.

    python scripts/build_archive.py                      # every model named in archive_configs/
    python scripts/build_archive.py --model NAME         # the model of archive_configs/NAME.yaml
    python scripts/build_archive.py --require NAME       # every model; only NAME's failure is fatal
    python scripts/build_archive.py CKPT --name NAME [--version V] [--config YAML]
                                    [--export-path DIR] [--archive-name FILE]

An archive holds the handler (handlers/xlstm_handler.py), the serving core (alm_forecaster/,
with the compiled kernel in native/_build/ when it was built; without its train/ and testing/
subpackages, which serving never imports and which need more than the serving requirements),
the checkpoint as the serialized file, and the model's effective config YAML:
archive_configs/default.yaml with the model's own YAML (or --config) merged over it. TorchServe
with only the pinned requirements installed serves it: the unpacked archive directory is on the
worker's sys.path.

Each model YAML in archive_configs/ names its checkpoint (relative to the repository root) in
an ``archive:`` section that is used here and left out of the archive::

    archive:
      checkpoint: models/seed_untrained.pt
      version: "1.0"

Every checkpoint is loaded and validated first (alm_forecaster.checkpoint.load_checkpoint):
a checkpoint that the server would refuse never becomes an archive. Exit status: 0 when every
requested archive was built, 1 otherwise (the others are still built), 2 for bad arguments;
with ``--require``, only the failure of a required model counts (scripts/serve.sh requires the
models it loads, so a model whose checkpoint is not made yet does not block the default).
The archive is written to a private directory and moved into place atomically, so a running
TorchServe never sees half an archive.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.util
import io
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from alm_forecaster.checkpoint import load_checkpoint
from alm_forecaster.errors import CheckpointError
from alm_forecaster.heads import head_for

ROOT = Path(__file__).resolve().parent.parent

CONFIG_DIR = ROOT / "archive_configs"
DEFAULT_CONFIG = CONFIG_DIR / "default.yaml"
HANDLER = ROOT / "handlers" / "xlstm_handler.py"
PACKAGE = ROOT / "alm_forecaster"
MODEL_STORE = ROOT / "model_store"

#: Names TorchServe accepts for models (and that are safe as file names).
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
#: Build leftovers that never travel inside an archive.
PACKAGE_IGNORE = shutil.ignore_patterns(
    "__pycache__", "*.pyc", "*.o", "*.obj", "*.ninja", ".ninja_*", "*.lock", "*.d", ".*"
)
#: Subpackages of alm_forecaster/ that are not serving code (training, test helpers).
NOT_SHIPPED = ("train", "testing")
#: TorchServe's own model-config keys that must be positive integers when present.
_POSITIVE_INT_KEYS = ("minWorkers", "maxWorkers", "batchSize", "responseTimeout", "startupTimeout")


class ArchiveError(Exception):
    """Why an archive was not built; the message names the model and the problem."""


@dataclass
class ArchiveSpec:
    """One archive to build: model name, version, checkpoint, effective YAML, file name."""

    name: str
    version: str
    checkpoint: Path
    config: dict
    archive_name: str

    @property
    def file_name(self) -> str:
        return f"{self.archive_name}.mar"


def read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ArchiveError(f"{path}: cannot read the YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ArchiveError(f"{path}: expected a mapping at the top level, found {type(data).__name__}")
    return data


def merge(base: dict, override: dict) -> dict:
    """Recursive dict merge; ``override`` wins, nested mappings are merged key by key."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def model_config_names() -> list[str]:
    """Models named in archive_configs/: every YAML there except default.yaml."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml") if p.name != DEFAULT_CONFIG.name)


def resolve_spec(
    name: str,
    checkpoint: Path | None = None,
    version: str | None = None,
    config_path: Path | None = None,
    archive_name: str | None = None,
) -> ArchiveSpec:
    """Effective settings of one archive: default.yaml < model YAML (or --config) < arguments."""
    if not NAME_RE.match(name):
        raise ArchiveError(f"model name {name!r} is not valid: use letters, digits, '_', '-' and '.'")
    config = read_yaml(DEFAULT_CONFIG) if DEFAULT_CONFIG.exists() else {}
    own = config_path or (CONFIG_DIR / f"{name}.yaml")
    if config_path is not None or own.exists():
        config = merge(config, read_yaml(own))
    section = config.pop("archive", None) or {}
    if not isinstance(section, dict):
        raise ArchiveError(f"{own}: 'archive' must be a mapping")
    if checkpoint is None:
        if not section.get("checkpoint"):
            raise ArchiveError(f"model {name!r}: no checkpoint given and {own} names none ('archive: checkpoint:')")
        checkpoint = Path(str(section["checkpoint"]))
        if not checkpoint.is_absolute():
            checkpoint = ROOT / checkpoint
    version = str(version or section.get("version") or "1.0")
    archive_name = archive_name or name
    if not NAME_RE.match(archive_name):
        raise ArchiveError(f"archive name {archive_name!r} is not valid")
    validate_config(config, name)
    return ArchiveSpec(name, version, Path(checkpoint), config, archive_name)


def validate_config(config: dict, name: str) -> None:
    """Catch config mistakes now rather than as a worker that never starts."""
    for key in _POSITIVE_INT_KEYS:
        value = config.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
            raise ArchiveError(f"model {name!r}: {key} must be a positive integer, got {value!r}")
    delay = config.get("maxBatchDelay")
    if delay is not None and (not isinstance(delay, int) or isinstance(delay, bool) or delay < 0):
        raise ArchiveError(f"model {name!r}: maxBatchDelay must be an integer >= 0 (ms), got {delay!r}")
    if config.get("minWorkers", 1) > config.get("maxWorkers", config.get("minWorkers", 1)):
        raise ArchiveError(f"model {name!r}: minWorkers {config['minWorkers']} > maxWorkers {config['maxWorkers']}")
    device_type = config.get("deviceType")
    if device_type is not None and device_type not in ("cpu", "gpu", "neuron"):
        raise ArchiveError(f"model {name!r}: deviceType must be cpu or gpu, got {device_type!r}")
    try:
        _handler_module().handler_settings(config)
    except ValueError as exc:
        raise ArchiveError(f"model {name!r}: {exc}") from None


def _handler_module():
    """The handler, imported from its file: its own validation of the ``handler:`` keys."""
    spec = importlib.util.spec_from_file_location("xlstm_handler", HANDLER)
    module = importlib.util.module_from_spec(spec)
    quiet = logging.getLogger("ts.torch_handler.base_handler")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # TorchServe announces its missing optional backends on import
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            spec.loader.exec_module(module)
    finally:
        quiet.setLevel(level)
    return module


def stage_package(dest: Path) -> bool:
    """Copy the serving core of alm_forecaster/ under ``dest`` (no build leftovers, no
    `NOT_SHIPPED` subpackage); True if a kernel .so came along."""

    def ignore(directory: str, names: list[str]) -> set[str]:
        ignored = set(PACKAGE_IGNORE(directory, names))
        if Path(directory) == PACKAGE:
            ignored.update(name for name in names if name in NOT_SHIPPED)
        return ignored

    shutil.copytree(PACKAGE, dest / PACKAGE.name, ignore=ignore)
    return any((dest / PACKAGE.name / "native").rglob("*.so"))


def build(spec: ArchiveSpec, export_path: Path, archive_format: str = "zip-store") -> Path:
    """Validate the checkpoint, then write ``export_path/<archive_name>.mar``; returns its path."""
    if not spec.checkpoint.is_file():
        raise ArchiveError(f"model {spec.name!r}: checkpoint {spec.checkpoint} does not exist")
    try:
        loaded = load_checkpoint(spec.checkpoint)
    except CheckpointError as exc:
        raise ArchiveError(f"model {spec.name!r}: checkpoint refused, no archive built: {exc}") from None
    export_path.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"build-archive-{spec.archive_name}-") as tmp:
        tmp = Path(tmp)
        (tmp / "pkg").mkdir()
        has_kernel = stage_package(tmp / "pkg")
        config_file = tmp / "model-config.yaml"
        head = head_for(loaded.quantile_head, loaded.config.output_size)
        serves = {"serves": {"series_kinds": list(head.kinds), "steps": head.steps, "quantiles": list(head.levels)}}
        config_file.write_text(
            f"# Effective config of model {spec.name} {spec.version}, written by alm_ops/archive.py\n"
            + yaml.safe_dump(spec.config, sort_keys=False)
            + "# What the checkpoint serves (read from it; for operators, not read by the handler)\n"
            + yaml.safe_dump(serves, sort_keys=False)
        )
        out_dir = tmp / "out"
        out_dir.mkdir()
        (tmp / "work").mkdir()
        command = [
            sys.executable,
            "-m",
            "model_archiver.model_packaging",
            "--model-name",
            spec.name,
            "--version",
            spec.version,
            "--handler",
            str(HANDLER),
            "--serialized-file",
            str(spec.checkpoint),
            "--extra-files",
            str(tmp / "pkg"),
            "--config-file",
            str(config_file),
            "--archive-format",
            archive_format,
            "--export-path",
            str(out_dir),
        ]
        # The archiver stages files in $TMPDIR/<model name>: give it a private TMPDIR so that
        # two builds of the same model (tests, serve.sh, another shell) never collide.
        env = {**os.environ, "TMPDIR": str(tmp / "work"), "TEMP": str(tmp / "work")}
        done = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if done.returncode != 0:
            raise ArchiveError(f"model {spec.name!r}: torch-model-archiver failed:\n{done.stdout.strip()}")
        produced = out_dir / (spec.name if archive_format == "no-archive" else f"{spec.name}.mar")
        target = export_path / (spec.archive_name if archive_format == "no-archive" else spec.file_name)
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(produced, target)
    size = target.stat().st_size if target.is_file() else sum(p.stat().st_size for p in target.rglob("*"))
    untrained = " UNTRAINED" if loaded.config.declared.get("untrained") else ""
    print(
        f"built {_show(target)}: model {spec.name} {spec.version}{untrained}, checkpoint {_show(spec.checkpoint)} "
        f"(sha256 {loaded.sha256[:12]}, hidden {loaded.config.hidden_size}, {loaded.config.output_size} outputs, "
        f"series kinds {', '.join(head.kinds)}), "
        f"{size / 1e6:.1f} MB, compiled kernel {'included' if has_kernel else 'not built (pure PyTorch)'}"
    )
    for warning in loaded.warnings:
        print(f"  note: {warning}")
    return target


def _show(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", nargs="?", type=Path, help="checkpoint to archive (default: every model)")
    parser.add_argument("--name", help="model name (required with a checkpoint)")
    parser.add_argument("--model", action="append", default=[], help="build this model of archive_configs/")
    parser.add_argument(
        "--require",
        action="append",
        default=[],
        metavar="MODEL",
        help="build every model, but fail only if one of these fails (the others warn)",
    )
    parser.add_argument("--version", help="model version (default: the YAML's archive.version, else 1.0)")
    parser.add_argument("--config", type=Path, help="model YAML merged over archive_configs/default.yaml")
    parser.add_argument("--export-path", type=Path, default=MODEL_STORE, help="output directory (model_store/)")
    parser.add_argument("--archive-name", help="file name of the archive without .mar (default: the model name)")
    parser.add_argument(
        "--archive-format",
        default="zip-store",
        choices=["zip-store", "default", "no-archive"],
        help="zip-store (default: an uncompressed .mar; weights do not compress), default (deflated .mar) "
        "or no-archive (a directory)",
    )
    args = parser.parse_args(argv)
    if args.checkpoint is not None:
        if not args.name:
            parser.error("a checkpoint needs --name")
        requests = [
            dict(
                name=args.name,
                checkpoint=args.checkpoint.resolve(),
                version=args.version,
                config_path=args.config,
                archive_name=args.archive_name,
            )
        ]
    else:
        if args.name or args.config or args.archive_name:
            parser.error("--name, --config and --archive-name need a checkpoint argument")
        names = args.model or model_config_names()
        if not names:
            parser.error(f"no model YAML in {CONFIG_DIR} (other than default.yaml)")
        missing = sorted(set(args.require) - set(names))
        if missing:
            parser.error(f"--require names models without a YAML in {CONFIG_DIR}: {', '.join(missing)}")
        requests = [dict(name=name, version=args.version) for name in names]
    failures = fatal = 0
    start = time.perf_counter()
    for request in requests:
        try:
            build(resolve_spec(**request), args.export_path, args.archive_format)
        except ArchiveError as exc:
            failures += 1
            required = not args.require or request["name"] in args.require
            fatal += required
            print(f"{'error' if required else 'warning'}: {exc}", file=sys.stderr)
    print(f"{len(requests) - failures} of {len(requests)} archive(s) built in {time.perf_counter() - start:.1f} s")
    return 1 if fatal else 0


if __name__ == "__main__":
    raise SystemExit(main())
