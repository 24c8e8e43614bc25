"""docker/prestop.py, the TorchServe container's preStop hook, on scripted /proc/net/tcp tables and
a simulated clock: it holds TorchServe's SIGTERM until the gateway is gone and nothing is in
flight, never longer than its timeout; and on the real tables of this machine."""

from __future__ import annotations

import argparse
import socket

from tests.deploy.conftest import ROOT, load_module

prestop = load_module(ROOT / "docker" / "prestop.py")

GATEWAY, INFERENCE = 8090, 8080
HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"


def table(sockets: list[tuple[int, str]]) -> str:
    rows = [
        f"{i:4d}: 0100007F:{port:04X} 0100007F:D431 {state} 00000000:00000000 00:00000000 00000000  1000 0 {i} 1"
        for i, (port, state) in enumerate(sockets)
    ]
    return HEADER + "".join(row + "\n" for row in rows)


def simulate(tmp_path, timeline, **options) -> tuple[str, float]:
    """Run the hook while ``timeline(t)`` gives the pod's sockets at simulated time t; returns
    what it printed and when it returned."""
    now = [0.0]

    def write():
        (tmp_path / "tcp").write_text(table(timeline(now[0])))
        (tmp_path / "tcp6").write_text(HEADER)

    def sleep(seconds):
        now[0] += seconds
        write()

    write()
    args = argparse.Namespace(
        gateway_port=GATEWAY, inference_port=INFERENCE, proc_net=tmp_path, quiet=1.0, gateway_grace=20.0, timeout=45.0
    )
    vars(args).update(options)
    return prestop.wait(args, clock=lambda: now[0], sleep=sleep), now[0]


def test_waits_for_the_gateway_to_drain_and_exit(tmp_path):
    def pod(t):
        listening = [(GATEWAY, prestop.LISTEN)] if t < 5 else []  # the gateway's own preStop: sleep 5
        clients = [(GATEWAY, prestop.ESTABLISHED)] if t < 8 else []  # requests it still holds
        forwarded = [(INFERENCE, prestop.ESTABLISHED)] if 4 < t < 7.5 else []
        return [(INFERENCE, prestop.LISTEN), *listening, *clients, *forwarded]

    said, at = simulate(tmp_path, pod)
    assert "the gateway is gone" in said
    assert 8.5 <= at < 9  # the gateway gone at 8, nothing in flight since 7.5: quiet for 1 s at 8.5


def test_a_lone_container_stop_waits_only_for_the_requests_in_flight(tmp_path):
    def pod(t):
        return [(GATEWAY, prestop.LISTEN), (INFERENCE, prestop.LISTEN)] + (
            [(INFERENCE, prestop.ESTABLISHED)] if t < 3 else []
        )

    said, at = simulate(tmp_path, pod, gateway_grace=10.0)
    assert "the gateway is not stopping" in said and 10 <= at < 10.5


def test_never_longer_than_the_timeout(tmp_path):
    said, at = simulate(tmp_path, lambda t: [(INFERENCE, prestop.ESTABLISHED)], timeout=12.0)
    assert "gave up waiting after 12 s" in said and 12 <= at < 12.5


def test_reads_this_machines_own_tables():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)):
            found = prestop.sockets(prestop.Path("/proc/net"))
            assert (port, prestop.LISTEN) in found
            assert prestop.in_flight(found, port)
