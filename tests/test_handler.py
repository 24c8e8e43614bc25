"""The TorchServe handler in-process, with TorchServe's own Context: batching and per-request status."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from unittest import mock

import pytest
import torch
from ts.context import Context

from alm_forecaster.errors import CheckpointError, InputError
from alm_forecaster.forecaster import Forecaster
from alm_forecaster.testing.synthetic import TINY, embeddings_csv, write_checkpoint
from tests.helpers import load_handler_module, make_context

handler_module = load_handler_module()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("model_dir")
    write_checkpoint(directory / "tiny.pt", TINY, seed=3)
    return directory


@pytest.fixture(scope="module")
def handler(model_dir):
    threads = torch.get_num_threads()
    instance = handler_module.XLSTMHandler()
    instance.initialize(make_context(model_dir, 1))
    torch.set_num_threads(threads)  # initialize set the worker's threads; restore the test process's
    return instance


def statuses(context: Context) -> list[int]:
    return [p.get_response_status_code() for p in context.request_processor]


def csv(seed: int, rows: int = 20) -> bytes:
    return embeddings_csv(rows=rows, input_size=TINY.input_size, seed=seed)


def test_batch_is_one_forward_with_per_request_status(handler, model_dir):
    requests = [
        {"data": bytearray(csv(1))},  # multipart, no content type
        {"data": csv(2).decode()},  # multipart ;type=text/csv arrives as str
        {"file": csv(3)},
        {"body": csv(4).decode()},  # raw text/csv
        {"body": {"rows": [1, 2]}},  # JSON body: 400
        {"body": bytearray(csv(6))},  # raw octet-stream
        {},  # no recognised key: 400
        {"data": csv(8, rows=15)},  # too few rows: 422
    ]
    context = make_context(model_dir, len(requests))
    with mock.patch.object(
        handler.forecaster.pipeline, "forward", wraps=handler.forecaster.pipeline.forward
    ) as forward:
        bodies = [json.loads(b) for b in handler.handle(requests, context)]
    assert forward.call_count == 1 and len(forward.call_args.args[0]) == 5
    assert statuses(context) == [200, 200, 200, 200, 400, 200, 400, 422]
    assert all(p.get_response_header("content-type") == "application/json" for p in context.request_processor)
    offline = Forecaster(handler.forecaster.loaded, "tiny", "3.1", torch.device("cpu"))
    for i, seed in zip([0, 1, 2, 3, 5], [1, 2, 3, 4, 6], strict=True):
        assert bodies[i]["predicted_prices"] == pytest.approx(
            offline.predict([csv(seed)])[0].body["predicted_prices"], rel=1e-6
        )
        assert bodies[i]["model"] == "tiny" and bodies[i]["model_version"] == "3.1"
    # a JSON document that is not a ForecastRequest: KServe's ErrorResponse, naming the field
    assert bodies[4]["error"]["code"] == "400" and bodies[4]["error"]["param"] == "model"
    assert "ForecastRequest" in bodies[4]["error"]["message"] and "-F data=@" in bodies[4]["error"]["message"]
    assert bodies[6] == {
        "error": "No CSV found in the request (form fields received: none); send the CSV as a multipart form "
        "field 'data' or 'file' (curl -F data=@prices.csv) or as the raw body with 'Content-Type: text/csv' or "
        "'application/octet-stream' (curl -H 'Content-Type: text/csv' --data-binary @prices.csv). A body sent "
        "without a Content-Type is form-decoded by the server and lost.",
        "code": 400,
    }
    assert bodies[7] == {"error": "Not enough data points. Need at least 20, got 15", "code": 422}


def test_unexpected_failure_of_one_request_is_a_500_for_it_alone(handler, model_dir):
    decode = handler.forecaster.decode

    def flaky(request):
        if b"poison" in bytes(request.body):
            raise RuntimeError("boom")
        return decode(request)

    requests = [{"data": csv(1)}, {"data": csv(2) + b"poison"}, {"data": csv(3)}]
    context = make_context(model_dir, len(requests))
    with mock.patch.object(handler.forecaster, "decode", side_effect=flaky):
        bodies = [json.loads(b) for b in handler.handle(requests, context)]
    assert statuses(context) == [200, 500, 200]
    assert bodies[1]["code"] == 500 and "RuntimeError: boom" in bodies[1]["error"]
    assert len(bodies[0]["predicted_prices"]) == TINY.output_size


def test_out_of_memory_is_507_and_nothing_escapes(handler, model_dir):
    requests = [{"data": csv(1)}, {"data": csv(2, rows=15)}]
    context = make_context(model_dir, len(requests))
    with mock.patch.object(handler.forecaster.pipeline, "forward", side_effect=MemoryError()):
        bodies = [json.loads(b) for b in handler.handle(requests, context)]
    assert statuses(context) == [507, 422]
    assert "out of memory" in bodies[0]["error"]


def test_describe(handler, model_dir):
    context = make_context(model_dir, 1, headers=[{"describe": "True"}])
    described = handler.handle([{}], context)[0]
    assert described["config"]["hidden_size"] == TINY.hidden_size
    assert described["block_pattern"] == "sms" and described["predicted_steps"] == TINY.output_size
    assert described["serving"]["settings"] == {"threads": 1, "seq_len": None, "device": "auto", "precision": "fp32"}
    assert described["precision"] == "fp32"


def test_yaml_settings_reach_the_forecaster(model_dir):
    threads = torch.get_num_threads()
    try:
        instance = handler_module.XLSTMHandler()
        instance.initialize(make_context(model_dir, 1, yaml={"batchSize": 4, "handler": {"threads": 2, "seq_len": 10}}))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    assert instance.forecaster.seq_len == 10 and instance.serving["batch_size"] == 4
    context = make_context(model_dir, 1)
    assert json.loads(instance.handle([{"data": csv(1, rows=12)}], context)[0])["prediction_horizon"] == 5


def test_bad_checkpoint_is_logged_clearly(tmp_path, caplog):
    (tmp_path / "tiny.pt").write_bytes(b"this is not a checkpoint")
    instance = handler_module.XLSTMHandler()
    with caplog.at_level(logging.ERROR), pytest.raises(CheckpointError):
        instance.initialize(make_context(tmp_path, 1))
    line = next(r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)
    assert "Model tiny 3.1 cannot be served: checkpoint refused" in line
    assert str(tmp_path / "tiny.pt") in line and "not a readable PyTorch checkpoint" in line


def test_bad_archive_config_is_logged_clearly(model_dir, caplog):
    instance = handler_module.XLSTMHandler()
    with caplog.at_level(logging.ERROR), pytest.raises(ValueError):
        instance.initialize(make_context(model_dir, 1, yaml={"handler": {"threads": -1}}))
    line = next(r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)
    assert line.startswith("Model tiny 3.1 cannot be served: ValueError: archive config 'handler.threads'")


@pytest.mark.parametrize("key", ["data", "file", "body"])
@pytest.mark.parametrize("value", [b"a,b", bytearray(b"a,b"), "a,b"])
def test_extract_request_takes_bytes_or_str(key, value):
    request = handler_module.extract_request({key: value, "other": "x"}, {})
    assert request.body == value and request.horizon is None and request.quantiles is None


def test_extract_request_prefers_data_and_refuses_other_shapes():
    assert handler_module.extract_request({"body": b"b", "data": b"d"}, {}).body == b"d"
    json_list = handler_module.extract_request({"body": [1]}, {"content-type": "application/json"})
    assert (json_list.body, json_list.content_type) == ([1], "application/json")  # the KServe decoder refuses it
    for request, reason in [
        ({"body": [1]}, "no_payload"),
        ({"data": 3}, "no_payload"),
        ({"x": b"1"}, "no_payload"),
        (None, "no_payload"),
    ]:
        with pytest.raises(InputError) as error:
            handler_module.extract_request(request, {})
        assert error.value.status == 400 and error.value.reason == reason


def test_extract_request_reads_options_from_fields_then_headers():
    headers = {"x-forecast-horizon": "2", "x-forecast-quantiles": "0.05,0.95", "content-type": "text/csv"}
    request = handler_module.extract_request({"body": b"csv"}, headers)
    assert (request.horizon, request.quantiles, request.content_type) == ("2", "0.05,0.95", "text/csv")
    request = handler_module.extract_request({"data": b"csv", "horizon": b"3", "quantiles": "0.5"}, headers)
    assert (request.horizon, request.quantiles) == ("3", "0.5")
    document = {"model": "m", "inputs": []}
    request = handler_module.extract_request({"body": document}, {})
    assert request.body is document and request.content_type == "application/json"


def test_handler_settings_validation():
    defaults = {"threads": None, "seq_len": None, "device": "auto", "precision": "fp32"}
    assert handler_module.handler_settings(None) == defaults
    assert handler_module.handler_settings({"handler": {"precision": "bf16"}})["precision"] == "bf16"
    for bad in ({"threads": 0}, {"seq_len": "20"}, {"threads": True}):
        with pytest.raises(ValueError, match="positive integer"):
            handler_module.handler_settings({"handler": bad})
    with pytest.raises(ValueError, match="handler.precision' must be one of \\('fp32', 'bf16'\\), got 'fp16'"):
        handler_module.handler_settings({"handler": {"precision": "fp16"}})
    with pytest.raises(ValueError, match="mapping"):
        handler_module.handler_settings({"handler": [1]})


def test_device_follows_torchserve(monkeypatch):
    monkeypatch.delenv("ALM_FORECASTER_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert handler_module.choose_device("auto", 1) == torch.device("cuda", 1)
    assert handler_module.choose_device("auto", None) == torch.device("cpu")  # deviceType cpu: stay on CPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert handler_module.choose_device("auto", 0) == torch.device("cpu")
    assert handler_module.choose_device("cpu", 0) == torch.device("cpu")
