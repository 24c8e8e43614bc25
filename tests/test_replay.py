"""Every served example and every hostile case, answered in-process, compared with the recorded answers.

tests/replay/answers.json holds, per request of `tests.corpus.replay_requests`, the status, the
metrics reason and the exact JSON text the handler would send (ids and times masked). A change
of any answer, a byte included, fails here: a restructuring must change none; a change that is
meant is recorded again with ``pytest tests/test_replay.py --record-replay`` and reviewed in the
diff of answers.json.
"""

from __future__ import annotations

import json

import pytest

from alm_forecaster.forecaster import Forecaster, Request
from alm_forecaster.testing.synthetic import TINY, write_checkpoint
from tests.corpus import replay_requests
from tests.helpers import ROOT, SEED

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


def masked(value: object) -> object:
    if isinstance(value, dict):
        return {k: VOLATILE[k] if k in VOLATILE else masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v) for v in value]
    return value


def answer(forecaster: Forecaster, case) -> dict:  # noqa: ANN001 - a tests.corpus.Replay
    outcome = forecaster.predict([Request(case.body, case.content_type, case.horizon, case.quantiles)])[0]
    return {"status": outcome.status, "reason": outcome.reason, "body": json.dumps(masked(outcome.body))}


@pytest.fixture(scope="module")
def recorded(request, forecasters) -> dict:
    if request.config.getoption("--record-replay"):
        answers = {case.id: answer(forecasters[case.model], case) for case in CASES}
        ANSWERS.write_text(json.dumps(answers, indent=1, ensure_ascii=False) + "\n")
    return json.loads(ANSWERS.read_text())


def test_the_recording_covers_the_corpus(recorded):
    assert sorted(recorded) == sorted(case.id for case in CASES)
    statuses = {entry["status"] for entry in recorded.values()}
    assert {200, 400, 422} <= statuses, statuses


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_the_answer_is_the_recorded_one(forecasters, recorded, case):
    assert answer(forecasters[case.model], case) == recorded[case.id]
