#!/usr/bin/env python3
"""preStop hook of the TorchServe container: hold TorchServe's SIGTERM until the pod's token
gateway has answered every request it accepted.

TorchServe 0.12 does not drain: on SIGTERM it closes its ports and, within a fraction of a
second, every open connection, dropping the requests it is processing (docs/operations.md,
"Operations under load"). In the pod every request comes through the gateway sidecar, which on
its own SIGTERM stops accepting, finishes what it holds and exits (docker/token_gateway.py).
Kubernetes starts both containers' preStop hooks together and sends each container SIGTERM
when its own hook returns, so this hook returns:

* once the gateway is gone: nothing listens on, or is connected to, ``--gateway-port`` in the
  pod's network namespace (which the containers share), and no connection to TorchServe's
  ``--inference-port`` has been open for ``--quiet`` seconds (the gateway opens one per
  request);
* or, when the gateway has not started to stop after ``--gateway-grace`` seconds (only this
  container is being stopped, e.g. after a failed liveness probe), once no connection to the
  inference port has been open for ``--quiet`` seconds;
* at the latest after ``--timeout`` seconds (keep it under terminationGracePeriodSeconds).

    prestop.py [--gateway-port 8090] [--inference-port 8080] [--quiet 1] [--gateway-grace 20]
               [--timeout 45]

Reads /proc/net/tcp and /proc/net/tcp6 (``--proc-net`` for another directory). Standard library
only. Prints one line saying what it waited for; always exits 0 (a failed hook would only
delay the stop further).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

#: /proc/net/tcp socket states (include/net/tcp_states.h).
ESTABLISHED, LISTEN = "01", "0A"
POLL_S = 0.1


def sockets(proc_net: Path) -> list[tuple[int, str]]:
    """(local port, state) of every TCP socket of this network namespace."""
    found = []
    for name in ("tcp", "tcp6"):
        try:
            lines = (proc_net / name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 3:
                found.append((int(fields[1].rsplit(":", 1)[1], 16), fields[3]))
    return found


def gateway_up(found: list[tuple[int, str]], port: int) -> bool:
    """The gateway still listens or still holds a client connection."""
    return any(p == port and state in (LISTEN, ESTABLISHED) for p, state in found)


def gateway_listening(found: list[tuple[int, str]], port: int) -> bool:
    return (port, LISTEN) in found


def in_flight(found: list[tuple[int, str]], port: int) -> bool:
    """A connection to TorchServe's inference port is open (a request on its way)."""
    return (port, ESTABLISHED) in found


def wait(args, clock=time.monotonic, sleep=time.sleep) -> str:
    """Wait as the module says; what it waited for."""
    start = clock()
    quiet_since = None
    while True:
        now = clock()
        found = sockets(args.proc_net)
        waiting_for_gateway = gateway_up(found, args.gateway_port)
        if waiting_for_gateway and gateway_listening(found, args.gateway_port) and now - start >= args.gateway_grace:
            waiting_for_gateway = False  # the gateway is not stopping: only this container is
        quiet_since = None if in_flight(found, args.inference_port) else (quiet_since or now)
        if not waiting_for_gateway and quiet_since is not None and now - quiet_since >= args.quiet:
            gone = "the gateway is gone" if not gateway_up(found, args.gateway_port) else "the gateway is not stopping"
            return f"prestop: {gone} and nothing in flight for {args.quiet:g} s after {now - start:.1f} s"
        if now - start >= args.timeout:
            return f"prestop: gave up waiting after {args.timeout:g} s"
        sleep(POLL_S)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gateway-port", type=int, default=8090)
    parser.add_argument("--inference-port", type=int, default=8080)
    parser.add_argument("--quiet", type=float, default=1.0, help="seconds without a connection to TorchServe")
    parser.add_argument("--gateway-grace", type=float, default=20.0, help="seconds for the gateway to start stopping")
    parser.add_argument("--timeout", type=float, default=45.0, help="seconds at most")
    parser.add_argument("--proc-net", type=Path, default=Path("/proc/net"))
    args = parser.parse_args(argv)
    print(wait(args), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
