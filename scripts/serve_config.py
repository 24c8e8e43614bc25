"""Write the runnable TorchServe config from the repository's config.properties template.

    python scripts/serve_config.py OUT [--model-store DIR] [--set key=value ...]
    python scripts/serve_config.py --models      # model names that load_models starts with

config.properties keeps paths out of the file (``@MODEL_STORE@``, ``@APP_DIR@``): TorchServe
resolves a relative ``model_store`` or ``metrics_config`` against its own working directory,
and ``allowed_urls`` must be an absolute ``file://`` regex. This fills in the absolute model
store (regex-escaped inside ``allowed_urls``) and the application directory (this repository,
or /opt/alm in the container image: where metrics_config.yaml lies), and applies ``--set``
overrides (the tests use them for free ports). Used by scripts/serve.sh, tests/conftest.py and
docker/entrypoint.sh.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "config.properties"
PLACEHOLDER = "@MODEL_STORE@"
#: The directory holding this repository's files (metrics_config.yaml): the repository root.
APP_PLACEHOLDER = "@APP_DIR@"


def _properties_escape(value: str) -> str:
    """A value as a .properties file must spell it (the backslash is its escape character)."""
    return value.replace("\\", "\\\\")


def render(
    model_store: Path, overrides: dict[str, str] | None = None, template: Path = TEMPLATE, app_dir: Path = ROOT
) -> str:
    """The template with the model store and application directory filled in and ``overrides``
    applied (new keys appended)."""
    store = str(Path(model_store).resolve())
    app = _properties_escape(str(Path(app_dir).resolve()))
    pending = dict(overrides or {})
    out = []
    for line in template.read_text().splitlines():
        key = line.split("=", 1)[0].strip() if "=" in line and not line.lstrip().startswith(("#", "!")) else None
        if key is not None and key in pending:
            out.append(f"{key}={_properties_escape(pending.pop(key))}")
            continue
        if PLACEHOLDER in line:
            if key == "allowed_urls":
                line = line.replace(PLACEHOLDER, _properties_escape(re.escape(store)))
            else:
                line = line.replace(PLACEHOLDER, _properties_escape(store))
        out.append(line.replace(APP_PLACEHOLDER, app))
    out.extend(f"{key}={_properties_escape(value)}" for key, value in pending.items())
    return "\n".join(out) + "\n"


def read_properties(path: Path = TEMPLATE) -> dict[str, str]:
    """Plain ``key=value`` lines of a config.properties (enough for this project's file)."""
    values = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", "!")):
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip()
    return values


def load_models(path: Path = TEMPLATE) -> list[str]:
    """Model names of ``load_models`` (``name=file.mar`` or ``file.mar``, named after its model)."""
    value = read_properties(path).get("load_models", "")
    names = []
    for item in filter(None, (part.strip() for part in value.split(","))):
        name, _, archive = item.rpartition("=")
        names.append(name or archive.removesuffix(".mar"))
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, nargs="?")
    parser.add_argument("--model-store", type=Path, default=ROOT / "model_store")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--models", action="store_true", help="print the model names of load_models")
    args = parser.parse_args(argv)
    if args.models:
        print("\n".join(load_models()))
        return 0
    if args.out is None:
        parser.error("OUT is required")
    overrides = {}
    for item in args.set:
        if "=" not in item:
            parser.error(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        overrides[key.strip()] = value
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(args.model_store, overrides))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
