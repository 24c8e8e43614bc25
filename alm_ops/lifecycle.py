"""Model lifecycle over TorchServe's management API: register, scale, set the default, unregister, list.

    python scripts/lifecycle.py register ARCHIVE.mar [--workers N] [--wait] [--timeout S] [--name NAME]
    python scripts/lifecycle.py scale MODEL[/VERSION] --min N [--max M] [--timeout S]
    python scripts/lifecycle.py set-default MODEL VERSION [--timeout S]
    python scripts/lifecycle.py unregister MODEL [VERSION] [--all] [--drain S] [--timeout S]
    python scripts/lifecycle.py list [--json]
    python scripts/lifecycle.py describe MODEL[/VERSION]

Common options (after the subcommand): ``--url`` (default $ALM_MANAGEMENT_URL or
http://127.0.0.1:8081), ``--token-file`` (TorchServe's key_file.json, key ``management``).
Token, first found: --token-file, $ALM_MANAGEMENT_TOKEN, .serve/key_file.json (scripts/serve.sh);
a key file is read again once when the server refuses its key (keys expire and rotate).

register   ``POST /models?url=ARCHIVE&synchronous=false``: returns at once (202) and the new
           version starts the archive's ``minWorkers`` (TorchServe 0.12 ignores
           ``initial_workers`` for an archive that sets it, as every archive built here does);
           ``--workers N`` then sets exactly N (``PUT ...?min_worker=N&max_worker=N``). With
           ``--wait``, polls until the new version's workers are READY (the model is found by
           its archive URL, so name and version need not be given). ARCHIVE is the
           file name of an archive in the server's model store (TorchServe refuses anything
           outside it: config.properties' allowed_urls); a path (with a ``/``) is sent as a
           ``file://`` URL of that absolute path, which must lie in the model store too.
scale      ``PUT /models/MODEL[/VERSION]?min_worker=N[&max_worker=M]&synchronous=true``, then
           waits until the workers are READY and their count is between N and M, and prints
           the count before and after. Without ``--max`` TorchServe sets max_worker to N as
           well: the model gets exactly N workers (up or down); with ``--max M`` it keeps
           between N and M (it stops workers above M). TorchServe 0.12 stops a worker without
           letting it finish its batch: clients must resend ``Worker died.`` (docs/client.md).
           Its scale call can fail under load (500 ConcurrentModificationException, with part
           of the workers stopped); it sets a state, so it is sent again (3 tries in all).
set-default  waits until VERSION's workers are all READY (refuses a version without workers),
           ``PUT /models/MODEL/VERSION/set-default``, then until unversioned requests go to
           VERSION; prints the old and the new default.
unregister ``DELETE /models/MODEL[/VERSION]``; without VERSION TorchServe removes the default
           version, which it refuses while other versions exist; ``--all`` removes every
           version (the default one last). A version that is not the default is drained
           first: its queue must stay empty for ``--drain`` seconds (default 2; a batch takes
           well under that), because TorchServe 0.12 drops what its workers hold when it
           stops them.
list       every model and version with its config and workers (``describe`` with
           ``customized=true``: the handler's own description of the served model); ``*`` marks
           the default version. ``--json`` prints the descriptions as JSON.
describe   ``GET /models/MODEL[/VERSION]?customized=true`` as JSON.

Errors are the server's own message (``HTTP 404: Model not found: nope``) on stderr, exit
status 1; 2 for bad arguments or an unreadable token file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from alm_ops.api import (
    POLL_S,
    ApiError,
    TorchServeApi,
    UsageError,
    all_ready,
    custom_metadata,
    split_model,
    worker_summary,
)
from alm_ops.keys import KeyFileError, Token

TOKEN_ENV = "ALM_MANAGEMENT_TOKEN"
#: Times a scale call is sent when TorchServe fails it with a 500 (it sets a state: safe to resend).
SCALE_TRIES = 3


# -- subcommands ----------------------------------------------------------------------------------


def archive_url(archive: str) -> str:
    if "://" in archive or "/" not in archive:
        return archive
    return Path(archive).resolve().as_uri()


def cmd_register(api: TorchServeApi, args) -> int:
    url = archive_url(args.archive)
    api.register(url, initial_workers=args.workers, model_name=args.name)
    count = "the archive's minWorkers" if args.workers is None else f"{args.workers}"
    print(f"registering {url} with {count} worker(s) (asynchronous)", file=sys.stderr)
    candidates = {url, url.rsplit("/", 1)[-1]}

    def registered(check):
        """A `wait` condition: the entry registered from this URL once `check(entry)` holds."""

        def condition():
            for name in [args.name] if args.name else api.model_names():
                for entry in api.versions(name):
                    if entry.get("modelUrl") in candidates:
                        if check(entry):
                            return entry, ""
                        return None, f"{name} {entry['modelVersion']}: {worker_summary(entry)}"
            return None, "not registered yet"

        return condition

    if args.workers is not None:
        entry = api.wait(registered(lambda _: True), url, args.timeout)
        api.scale(entry["modelName"], entry["modelVersion"], args.workers, args.workers, synchronous=False)
    if not args.wait:
        return 0
    wanted = (
        (lambda e: all_ready(e, e.get("minWorkers", 1)))
        if args.workers is None
        else (lambda e: all_ready(e, args.workers, args.workers))
    )
    entry = api.wait(registered(wanted), url, args.timeout)
    print(f"{entry['modelName']} {entry['modelVersion']}: {worker_summary(entry)}")
    return 0


def say(body: object) -> str:
    """TorchServe's own words in a management answer."""
    return body.get("status", body) if isinstance(body, dict) else str(body)


def cmd_scale(api: TorchServeApi, args) -> int:
    name, version = split_model(args.model)
    if args.max is not None and args.max < args.min:
        raise UsageError("--max must be >= --min")
    before = len(api.describe(name, version).get("workers", []))
    for attempt in range(1, SCALE_TRIES + 1):
        try:
            body = api.scale(name, version, args.min, args.max, synchronous=True, timeout=int(args.timeout))
            break
        except ApiError as exc:
            if exc.status != 500 or attempt == SCALE_TRIES:
                raise
            print(f"TorchServe failed the scale call ({exc}); sending it again", file=sys.stderr)
            time.sleep(POLL_S)
    print(say(body), file=sys.stderr)

    def ready():
        described = api.describe(name, version)
        high = args.max if args.max is not None else max(described.get("maxWorkers", args.min), args.min)
        return (described if all_ready(described, args.min, high) else None), worker_summary(described)

    described = api.wait(ready, f"{args.model} workers", args.timeout)
    print(
        f"{described['modelName']} {described['modelVersion']}: {before} -> {worker_summary(described)} "
        f"(min {described['minWorkers']}, max {described['maxWorkers']})"
    )
    return 0


def cmd_set_default(api: TorchServeApi, args) -> int:
    old = api.describe(args.model)["modelVersion"]
    target = api.describe(args.model, args.version)
    if not target.get("minWorkers"):
        raise ApiError(f"{args.model} {args.version} has no workers (min 0): scale it first, or its requests get 503")

    def ready():
        described = api.describe(args.model, args.version)
        return (described if all_ready(described, 1) else None), worker_summary(described)

    target = api.wait(ready, f"{args.model} {args.version} workers", args.timeout)
    print(say(api.set_default(args.model, args.version)), file=sys.stderr)

    def switched():
        now = api.describe(args.model)["modelVersion"]
        return (now if now == args.version else None), f"the default is {now}"

    api.wait(switched, f"{args.model} default version", args.timeout)
    print(f"{args.model}: default version {old} -> {args.version} ({worker_summary(target)})")
    return 0


def drain(api: TorchServeApi, model: str, version: str, quiet: float, timeout: float) -> None:
    """Wait until ``version`` has had no queued request for ``quiet`` seconds: what its workers
    hold is then answered (TorchServe 0.12 reports no busy worker, only its queue)."""
    deadline, empty_since = time.monotonic() + timeout, None
    while True:
        queue = api.describe(model, version).get("jobQueueStatus") or {}
        now = time.monotonic()
        if queue.get("pendingRequests", 0):
            empty_since = None
        elif empty_since is None:
            empty_since = now
        if empty_since is not None and now - empty_since >= quiet:
            print(f"{model} {version}: no queued request for {quiet:g} s", file=sys.stderr)
            return
        if now > deadline:
            raise ApiError(f"{model} {version} still has queued requests after {timeout:g} s (last: {queue})")
        time.sleep(POLL_S)


def cmd_unregister(api: TorchServeApi, args) -> int:
    default = api.describe(args.model)["modelVersion"]
    if args.all:
        if args.version:
            raise UsageError("give either VERSION or --all")
        versions = [e["modelVersion"] for e in api.versions(args.model)]
        order = [v for v in versions if v != default] + [default]
    else:
        order = [args.version]
    for version in order:
        if version and version != default and args.drain > 0:
            drain(api, args.model, version, args.drain, args.timeout)
        print(say(api.unregister(args.model, version)))
    return 0


def descriptions(api: TorchServeApi) -> list[dict]:
    """Every version of every model, described with customized=true, ``default`` marked."""
    out = []
    for name in api.model_names():
        default = api.describe(name)["modelVersion"]
        for entry in api.versions(name):
            version = entry["modelVersion"]
            try:
                described = api.describe(name, version, customized=True)
            except ApiError as exc:  # no worker to ask (scaled to 0, still loading): the plain description
                described = {**entry, "customizedMetadata": {"error": str(exc)}}
            out.append({**described, "default": version == default})
    return out


def cmd_list(api: TorchServeApi, args) -> int:
    described = descriptions(api)
    if args.json:
        print(json.dumps(described, indent=2))
        return 0
    header = ("MODEL", "VERSION", "DEFAULT", "WORKERS", "MIN-MAX", "BATCH", "DELAY", "DEVICE", "ARCHIVE", "SERVED")
    rows = [header]
    for d in described:
        meta = custom_metadata(d)
        served = (
            f"{meta.get('parameter_count', '?')} params, {meta.get('predicted_steps', '?')} steps, "
            f"accepts {'+'.join(meta.get('accepts') or ['?'])}"
            if "error" not in meta
            else meta["error"]
        )
        rows.append(
            (
                d["modelName"],
                d["modelVersion"],
                "*" if d["default"] else "",
                worker_summary(d),
                f"{d.get('minWorkers')}-{d.get('maxWorkers')}",
                str(d.get("batchSize")),
                f"{d.get('maxBatchDelay')}ms",
                str(meta.get("device", d.get("deviceType"))),
                d.get("modelUrl", ""),
                served,
            )
        )
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(header) - 1)]
    for row in rows:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + str(row[-1]))
    return 0


def cmd_describe(api: TorchServeApi, args) -> int:
    name, version = split_model(args.model)
    print(json.dumps(api.describe(name, version, customized=True), indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--url",
        default=os.environ.get("ALM_MANAGEMENT_URL", "http://127.0.0.1:8081"),
        help="management API (default: $ALM_MANAGEMENT_URL or http://127.0.0.1:8081)",
    )
    common.add_argument("--token-file", type=Path, help="TorchServe key_file.json (key 'management')")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("register", parents=[common], help="register an archive (asynchronously)")
    p.add_argument("archive", help="archive file name in the model store (or a path inside it)")
    p.add_argument("--workers", type=int, help="exactly this many workers (default: the archive's minWorkers)")
    p.add_argument("--name", help="register under this model name instead of the archive's")
    p.add_argument("--wait", action="store_true", help="wait until the workers are READY")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait (default 300)")
    p.set_defaults(run=cmd_register)

    p = sub.add_parser("scale", parents=[common], help="set a model's worker range and wait for it")
    p.add_argument("model", metavar="MODEL[/VERSION]")
    p.add_argument("--min", type=int, required=True, help="min workers (started now)")
    p.add_argument("--max", type=int, help="max workers (default: --min, i.e. exactly N workers)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait (default 300)")
    p.set_defaults(run=cmd_scale)

    p = sub.add_parser("set-default", parents=[common], help="make VERSION the model's default")
    p.add_argument("model")
    p.add_argument("version")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait (default 300)")
    p.set_defaults(run=cmd_set_default)

    p = sub.add_parser("unregister", parents=[common], help="unregister a model version")
    p.add_argument("model")
    p.add_argument("version", nargs="?")
    p.add_argument("--all", action="store_true", help="every version, the default one last")
    p.add_argument("--drain", type=float, default=2.0, help="seconds a version's queue must stay empty (default 2)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for it (default 300)")
    p.set_defaults(run=cmd_unregister)

    p = sub.add_parser("list", parents=[common], help="models, versions, config and workers")
    p.add_argument("--json", action="store_true", help="the descriptions as JSON")
    p.set_defaults(run=cmd_list)

    p = sub.add_parser("describe", parents=[common], help="one model's description (customized=true)")
    p.add_argument("model", metavar="MODEL[/VERSION]")
    p.set_defaults(run=cmd_describe)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    workers = getattr(args, "workers", None)
    if (workers is not None and workers < 1) or getattr(args, "min", 0) < 0:
        print("error: --workers must be >= 1 and --min >= 0", file=sys.stderr)
        return 2
    try:
        token = Token.resolve(args.token_file, env_var=TOKEN_ENV, kind="management")
        return args.run(TorchServeApi(management_url=args.url, tokens={"management": token}), args)
    except (UsageError, KeyFileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ApiError as exc:
        hint = f" (the management token was refused: check --token-file or ${TOKEN_ENV})" if exc.refused else ""
        print(f"error: {exc}{hint}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
