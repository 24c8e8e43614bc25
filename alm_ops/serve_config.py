"""Write the runnable TorchServe config from the repository's config.properties template.

    python -m alm_ops.serve_config OUT [--model-store DIR] [--app-dir DIR] [--listen HOST]
                                   [--set key=value ...] [--archives]
    python -m alm_ops.serve_config --models    # model names that load_models starts with
    (scripts/serve_config.py takes the same arguments)

config.properties keeps paths out of the file (``@MODEL_STORE@``, ``@APP_DIR@``): TorchServe
resolves a relative ``model_store`` or ``metrics_config`` against its own working directory,
and ``allowed_urls`` must be an absolute ``file://`` regex. This fills in the absolute model
store (regex-escaped inside ``allowed_urls``) and the application directory (this repository,
or /opt/alm in the container image: where metrics_config.yaml lies), then applies the
overrides: ``--listen`` moves the three HTTP addresses to another host on the same ports (the
container entrypoint listens on 0.0.0.0), ``--set`` sets any key (the tests use it for free
ports). ``--archives`` prints the archive files named in the written file's load_models, one
per line. Used by scripts/serve.sh, alm_ops.launcher and docker/entrypoint.sh: the image has
only the serving requirements, so this module imports the standard library only.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "config.properties"
PLACEHOLDER = "@MODEL_STORE@"
#: The directory holding this repository's files (metrics_config.yaml): the repository root.
APP_PLACEHOLDER = "@APP_DIR@"
#: The HTTP APIs' listen addresses (gRPC has its own host keys and stays on loopback).
ADDRESS_KEYS = ("inference_address", "management_address", "metrics_address")


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


def listen_on(host: str, template: Path = TEMPLATE) -> dict[str, str]:
    """Overrides moving the template's three HTTP addresses to ``host``, scheme and port kept."""
    values = read_properties(template)
    moved = {}
    for key in ADDRESS_KEYS:
        url = urlsplit(values[key])
        moved[key] = f"{url.scheme}://{host}:{url.port}"
    return moved


def archives(config: Path) -> list[str]:
    """The archive files (or URLs) that a config's load_models names; none for ``ALL``."""
    names = []
    for entry in read_properties(config).get("load_models", "").split(","):
        entry = entry.strip()
        if entry and entry not in ("ALL", "all"):
            names.append(entry.split("=", 1)[-1])
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, nargs="?")
    parser.add_argument("--model-store", type=Path, default=ROOT / "model_store")
    parser.add_argument(
        "--app-dir", type=Path, default=ROOT, help="where config.properties and metrics_config.yaml are"
    )
    parser.add_argument("--listen", metavar="HOST", help="listen on HOST (same ports) instead of the template's")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--archives", action="store_true", help="print the archives that load_models names")
    parser.add_argument("--models", action="store_true", help="print the model names of load_models")
    args = parser.parse_args(argv)
    template = args.app_dir / TEMPLATE.name
    if args.models:
        print("\n".join(load_models(template)))
        return 0
    if args.out is None:
        parser.error("OUT is required")
    overrides = listen_on(args.listen, template) if args.listen else {}
    for item in args.set:
        if "=" not in item:
            parser.error(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        overrides[key.strip()] = value
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(args.model_store, overrides, template=template, app_dir=args.app_dir))
    if args.archives:
        print("\n".join(archives(args.out)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
