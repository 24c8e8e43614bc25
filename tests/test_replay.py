"""Every served example and every hostile case, answered in-process, compared with the recorded answers.

tests/replay/answers.json holds, per request of `tests.replay_corpus.replay_requests`, the status, the
metrics reason and the exact JSON text the handler would send (ids and times masked). A change
of any answer, a byte included, fails here: a restructuring must change none; a change that is
meant is recorded again with ``pytest tests/test_replay.py --record-replay`` and reviewed in the
diff of answers.json.

Byte for byte holds where the forward runs the same instructions as when it was recorded (the
recording keeps the kernel build and the CPU's vector extensions); on another CPU the float32
network can round its last bit differently, so there numbers are compared to 1e-5 relative and
everything else (statuses, reasons, messages, keys, shapes) exactly.
"""

from __future__ import annotations

import json
import math

import pytest

from alm_forecaster import native
from alm_forecaster.forecaster import Forecaster, Request
from alm_forecaster.testing.synthetic import TINY, write_checkpoint
from tests.helpers import ROOT, SEED
from tests.replay_corpus import replay_requests

ANSWERS = ROOT / "tests" / "replay" / "answers.json"
CASES = replay_requests(ROOT / "examples")
#: Keys whose values change at every call (a fresh uuid, the clock).
VOLATILE = {"id": "<id>", "created_at": 0}


@pytest.fixture(scope="module")
def forecasters(tmp_path_factory) -> dict[str, Forecaster]:
    folder = tmp_path_factory.mktemp("replay")
    checkpoints = {
        "tiny": write_checkpoint(folder / "tiny.pt", TINY, seed=7, declared_output_size=1),
        "seed_untrained": write_checkpoint(folder / "seed_untrained.pt", SEED, seed=0),
        "alm_quantiles": ROOT / "models" / "alm_quantiles.pt",
        "sp500_xlstm": ROOT / "models" / "sp500_xlstm.pt",
    }
    return {name: Forecaster.from_checkpoint(path, name, device="cpu") for name, path in checkpoints.items()}


def environment() -> dict:
    """What decides the float32 rounding of the forward: the kernel build and the vector extensions."""
    wide = sorted(f for f in native.cpu_features() or () if f.startswith(("avx", "fma")))
    return {"kernel": native.variant(), "vector_extensions": wide}


def masked(value: object) -> object:
    if isinstance(value, dict):
        return {k: VOLATILE[k] if k in VOLATILE else masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v) for v in value]
    return value


def answer(forecaster: Forecaster, case) -> dict:  # noqa: ANN001 - a tests.replay_corpus.Replay
    outcome = forecaster.predict(
        [Request(case.body, case.content_type, case.horizon, case.quantiles, case.kind, case.scenario)]
    )[0]
    return {"status": outcome.status, "reason": outcome.reason, "body": json.dumps(masked(outcome.body))}


@pytest.fixture(scope="module")
def recorded(request, forecasters) -> dict:
    if request.config.getoption("--record-replay"):
        answers = {case.id: answer(forecasters[case.model], case) for case in CASES}
        document = {"environment": environment(), "answers": answers}
        ANSWERS.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n")
    return json.loads(ANSWERS.read_text())


def close(got: object, want: object) -> bool:
    """Equal, numbers to 1e-5 relative (the same JSON shape, keys and strings exactly)."""
    if isinstance(want, float) and isinstance(got, float):
        return math.isclose(got, want, rel_tol=1e-5, abs_tol=1e-12)
    if isinstance(want, dict) and isinstance(got, dict):
        return list(got) == list(want) and all(close(got[k], want[k]) for k in want)
    if isinstance(want, list) and isinstance(got, list):
        return len(got) == len(want) and all(close(g, w) for g, w in zip(got, want, strict=True))
    return got == want


def test_the_recording_covers_the_corpus(recorded):
    assert sorted(recorded["answers"]) == sorted(case.id for case in CASES)
    statuses = {entry["status"] for entry in recorded["answers"].values()}
    assert {200, 400, 422} <= statuses, statuses


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_the_answer_is_the_recorded_one(forecasters, recorded, case):
    got, want = answer(forecasters[case.model], case), recorded["answers"][case.id]
    if recorded["environment"] == environment():
        assert got == want
    else:
        assert (got["status"], got["reason"]) == (want["status"], want["reason"])
        assert close(json.loads(got["body"]), json.loads(want["body"])), (got["body"], want["body"])


def test_a_changed_answer_fails():
    """Negative control: one digit, one key or one status changed is not the recorded answer."""
    body = {"predicted_prices": [101.25, 102.5], "model": "m"}
    assert close(body, {"predicted_prices": [101.25, 102.5], "model": "m"})
    assert not close(body, {"predicted_prices": [101.25, 102.6], "model": "m"})
    assert not close(body, {"predicted_prices": [101.25, 102.5], "model": "n"})
    assert not close(body, {"model": "m", "predicted_prices": [101.25, 102.5]})
