"""The handler's domain metrics: declared in metrics_config.yaml, emitted by the handler, shown by
a real TorchServe on its Prometheus endpoint with exact counts."""

from __future__ import annotations

import importlib.util
import logging
import re
import threading
import time
from pathlib import Path

import pytest
import torch
import yaml
from ts.context import RequestProcessor
from ts.metrics.metric_cache_yaml_impl import MetricsCacheYamlImpl

from alm_forecaster.testing.synthetic import TINY, embeddings_csv, write_checkpoint
from alm_ops import serve_config
from alm_ops.launcher import TorchServe
from tests.helpers import load_handler_module, make_context

ROOT = Path(__file__).resolve().parent.parent
METRICS_CONFIG = ROOT / "metrics_config.yaml"
TS_DEFAULT = Path(importlib.util.find_spec("ts").origin).parent / "configs" / "metrics.yaml"
DOMAIN = {
    "ForecastsServed": ("counter", ["ModelName", "ModelVersion", "Level"]),
    "BooksServed": ("counter", ["ModelName", "ModelVersion", "Level"]),
    "ScenarioPaths": ("counter", ["ModelName", "ModelVersion", "Level"]),
    "RequestsRejected": ("counter", ["ModelName", "ModelVersion", "Level", "Reason"]),
    "ParseTime": ("gauge", ["ModelName", "ModelVersion", "Level"]),
    "ForwardTime": ("gauge", ["ModelName", "ModelVersion", "Level"]),
    "ResponseTime": ("gauge", ["ModelName", "ModelVersion", "Level"]),
    "StageSeconds": ("histogram", ["ModelName", "ModelVersion", "Level", "Stage"]),
}


BOOK_METRICS = ("BooksServed", "ScenarioPaths")


def declared(config: dict, section: str) -> dict[str, tuple[str, list[str]]]:
    return {
        entry["name"]: (kind, list(entry.get("dimensions") or []))
        for kind, entries in (config.get(section) or {}).items()
        for entry in entries or []
    }


# -- the metrics config ------------------------------------------------------------------------


def test_metrics_config_is_torchserves_default_plus_the_domain_metrics():
    ours, default = yaml.safe_load(METRICS_CONFIG.read_text()), yaml.safe_load(TS_DEFAULT.read_text())
    for section in ("ts_metrics", "model_metrics"):
        mine = declared(ours, section)
        for name, spec in declared(default, section).items():
            assert mine.get(name) == spec, f"{section}.{name} differs from TorchServe's default"
    assert {name: declared(ours, "model_metrics")[name] for name in DOMAIN} == DOMAIN
    cache = MetricsCacheYamlImpl(str(METRICS_CONFIG))
    cache.initialize_cache()  # the worker's own parser accepts it
    assert {"counter:ForecastsServed", "counter:RequestsRejected", "gauge:ParseTime"} <= set(cache.cache_keys())


@pytest.mark.parametrize("listen", [None, "0.0.0.0"], ids=["host", "container"])
def test_rendered_config_names_the_metrics_config(tmp_path, listen):
    """As scripts/serve.sh and the tests render it, and as docker/entrypoint.sh does (--listen)."""
    overrides = serve_config.listen_on(listen) if listen else {}
    text = serve_config.render(tmp_path, overrides, app_dir=ROOT)
    values = dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))
    assert Path(values["metrics_config"]) == METRICS_CONFIG and METRICS_CONFIG.is_file()
    assert values["metrics_mode"] == "prometheus"
    assert "model_metrics_auto_detect" not in values and "@APP_DIR@" not in text
    docker = serve_config.render(tmp_path, overrides, app_dir=Path("/opt/alm"))
    assert "metrics_config=/opt/alm/metrics_config.yaml" in docker.splitlines()


# -- the handler in-process, with TorchServe's real metrics cache -----------------------------


@pytest.fixture(scope="module")
def handler(tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("metrics_model")
    write_checkpoint(model_dir / "tiny.pt", TINY, seed=3)
    cache = MetricsCacheYamlImpl(str(METRICS_CONFIG))
    cache.initialize_cache()
    cache.model_name = "tiny"
    context = make_context(model_dir, 8, metrics=cache)
    threads = torch.get_num_threads()
    instance = load_handler_module().XLSTMHandler()
    instance.initialize(context)
    torch.set_num_threads(threads)
    return instance, context


LINE = re.compile(r"\[METRICS\](\w+)\.(\w+):([\d.]+)\|#([^|]*)\|#type:(\w+)\|")


def emitted(handler, data: list, caplog) -> list[tuple[str, float, dict, str]]:
    """Run one batch through the handler; the metric lines it logged: (name, value, dims, type)."""
    instance, context = handler
    context.request_processor = [RequestProcessor({}) for _ in data]
    ids = {i: f"req-{i}" for i in range(len(data))}
    context.request_ids = context.metrics.request_ids = ids
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="ts.metrics.caching_metric"):
        instance.handle(data, context)
    out = []
    for record in caplog.records:
        match = LINE.search(record.getMessage())
        if match:
            dims = dict(item.split(":", 1) for item in match.group(4).split(","))
            out.append((match.group(1), float(match.group(3)), dims, match.group(5)))
    return out


def test_handler_emits_counts_and_stage_times_with_named_dimensions(handler, caplog):
    good = embeddings_csv(rows=20, input_size=TINY.input_size, seed=1)
    batch = [{"data": good}, {"data": b"a,b\n1,2\n"}, {"data": good}, {"nothing": b""}, {"data": b"a,b\n3,4\n"}]
    lines = emitted(handler, batch, caplog)
    by_name = {}
    for name, value, dims, kind in lines:
        by_name.setdefault(name, []).append((value, dims, kind))
    base = {"ModelName": "tiny", "ModelVersion": "3.1", "Level": "Model"}
    assert by_name["ForecastsServed"] == [(2.0, base, "COUNTER")]
    assert sorted(by_name["RequestsRejected"], key=lambda v: v[1]["Reason"]) == [
        (2.0, {**base, "Reason": "missing_columns"}, "COUNTER"),
        (1.0, {**base, "Reason": "no_payload"}, "COUNTER"),
    ]
    for stage in ("ParseTime", "ForwardTime", "ResponseTime"):
        [(value, dims, kind)] = by_name[stage]
        assert dims == base and kind == "GAUGE" and value >= 0
    assert by_name["ForwardTime"][0][0] > 0
    assert by_name["HandlerTime"][0][1] == {"ModelName": "tiny", "Level": "Model"}


def test_unexpected_failures_are_counted_as_internal_or_out_of_memory(handler, caplog, monkeypatch):
    instance, _ = handler
    good = embeddings_csv(rows=20, input_size=TINY.input_size, seed=2)
    for error, reason in ((RuntimeError("boom"), "internal"), (MemoryError(), "out_of_memory")):

        def broken(payloads, timings=None, error=error):
            raise error

        monkeypatch.setattr(instance.forecaster, "predict", broken)
        lines = emitted(handler, [{"data": good}], caplog)
        assert [(n, v, d["Reason"]) for n, v, d, _ in lines if n == "RequestsRejected"] == [
            ("RequestsRejected", 1.0, reason)
        ]
        assert not [n for n, *_ in lines if n in ("ForecastsServed", "ParseTime", "ForwardTime")]
    monkeypatch.undo()
    lines = emitted(handler, [{"data": b'{"not": "csv"}'}], caplog)  # refused before any forward
    assert [(n, d.get("Reason")) for n, _, d, _ in lines if n == "RequestsRejected"] == [
        ("RequestsRejected", "not_csv")
    ]


# -- a real TorchServe: exact increments on :8082/metrics --------------------------------------

SAMPLE = re.compile(r"^(\w+)\{(.*)\} (\S+)$")


def scrape(torchserve: TorchServe) -> tuple[dict, str]:
    """{(metric, frozenset of labels): value} of the Prometheus page, and the page."""
    text = torchserve.metrics()
    samples = {}
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match:
            labels = frozenset(re.findall(r'(\w+)="([^"]*)"', match.group(2)))
            samples[(match.group(1), labels)] = float(match.group(3))
    return samples, text


def domain_counts(samples: dict, model: str) -> dict[str, float]:
    """ForecastsServed, RequestsRejected/<reason> and StageSeconds/<stage> (the histogram's count)
    of one model (summed over hosts/versions)."""
    counts: dict[str, float] = {}
    for (name, labels), value in samples.items():
        labels = dict(labels)
        if labels.get("ModelName") != model:
            continue
        if name == "ForecastsServed":
            counts[name] = counts.get(name, 0.0) + value
        elif name == "RequestsRejected":
            key = f"{name}/{labels['Reason']}"
            counts[key] = counts.get(key, 0.0) + value
        elif name == "StageSeconds_count":
            key = f"StageSeconds/{labels['Stage']}"
            counts[key] = counts.get(key, 0.0) + value
    return counts


def with_cell(csv: bytes, row: int, value: bytes) -> bytes:
    """The CSV with the first cell of data row ``row`` replaced."""
    lines = csv.split(b"\n")
    lines[row] = b",".join([value, *lines[row].split(b",")[1:]])
    return b"\n".join(lines)


def test_known_traffic_moves_the_counters_exactly(torchserve):
    model = "tiny"
    torchserve.wait_ready(model)
    version = torchserve.describe(model)["modelVersion"]
    good = [embeddings_csv(rows=20 + i, input_size=TINY.input_size, seed=200 + i) for i in range(4)]
    bad = {  # request -> the reason the handler gives
        "missing_columns": dict(files={"data": ("p.csv", b"a,b\n1,2\n")}),
        "too_few_rows": dict(files={"data": ("p.csv", embeddings_csv(rows=5, input_size=TINY.input_size))}),
        "bad_value": dict(files={"data": ("p.csv", with_cell(good[0], row=3, value=b"abc"))}),
        "encoding": dict(data="é".encode("latin-1") * 10, headers={"Content-Type": "application/octet-stream"}),
        "bad_json": dict(json={"rows": []}),
    }
    requests_ = [dict(files={"data": (f"g{i}.csv", csv)}) for i, csv in enumerate(good)]
    requests_ += list(bad.values()) + [bad["missing_columns"]]  # missing_columns twice
    expected_status = [200] * len(good) + [422, 422, 422, 400, 400, 422]

    before, _ = scrape(torchserve)
    before = domain_counts(before, model)
    results: list = [None] * len(requests_)
    barrier = threading.Barrier(len(requests_))

    def send(i: int) -> None:  # concurrently: batches mix good and bad requests
        barrier.wait()
        results[i] = torchserve.predict(model, **requests_[i])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(requests_))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert [r.status_code for r in results] == expected_status, [r.text for r in results]

    increments = {"ForecastsServed": len(good), **{f"RequestsRejected/{reason}": 1 for reason in bad}}
    increments["RequestsRejected/missing_columns"] = 2
    # every request observes each stage of its batch once (all of them reached predict)
    increments |= {f"StageSeconds/{stage}": len(requests_) for stage in ("decode", "forward", "encode", "handler")}
    wanted = {key: before.get(key, 0.0) + n for key, n in increments.items()}
    # The worker logs its metrics and the front end folds them in asynchronously: poll briefly.
    deadline = time.monotonic() + 15
    while True:
        samples, text = scrape(torchserve)
        after = domain_counts(samples, model)
        if all(after.get(k, 0.0) >= v for k, v in wanted.items()) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    time.sleep(0.5)  # anything late would now show as an overshoot
    samples, text = scrape(torchserve)
    after = domain_counts(samples, model)
    assert {k: after.get(k, 0.0) for k in wanted} == wanted
    assert {k: v for k, v in after.items() if k not in wanted} == {k: v for k, v in before.items() if k not in wanted}

    # The exported shape: types, and the labels the dashboard queries (books: tests/test_server_book.py).
    for name, (kind, dims) in DOMAIN.items():
        if name in BOOK_METRICS:
            continue
        assert f"# TYPE {name} {kind}" in text
        if kind == "histogram":  # exported as NAME_bucket / NAME_count / NAME_sum
            name = f"{name}_count"
        # Other tests may register more versions of the session's model: look at this one's series.
        series = [
            dict(labels)
            for (metric, labels) in samples
            if metric == name and ("ModelName", model) in labels and ("ModelVersion", version) in labels
        ]
        assert series, f"{name} not exported for {model} {version}"
        for labels in series:
            assert set(labels) == {*dims, "Hostname"} and labels["Level"] == "Model"
    stage_times = [
        v
        for (m, labels), v in samples.items()
        if m in ("ParseTime", "ForwardTime", "ResponseTime") and ("ModelName", model) in labels
    ]
    assert len(stage_times) >= 3 and all(v >= 0 for v in stage_times)
