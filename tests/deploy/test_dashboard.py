"""deploy/grafana/dashboard.json: its structure, the metric names and labels TorchServe exports,
PromQL that ``promtool`` (Debian's ``prometheus`` package, which scripts/setup_env.sh --dev
installs; required under ALM_REQUIRE_TOOLS=1) accepts, and the handler metrics it shows as
metrics_config.yaml (the file config.properties names) declares them."""

from __future__ import annotations

import json
import re

import yaml

from tests.deploy.conftest import ROOT, debian_tool, run

DASHBOARD = ROOT / "deploy" / "grafana" / "dashboard.json"
BUILTIN_METRICS = (
    "ts_inference_requests_total",
    "ts_inference_latency_microseconds",
    "ts_queue_latency_microseconds",
    "Requests2XX",
    "Requests4XX",
    "Requests5XX",
    "HandlerTime",
    "PredictionTime",
    "WorkerThreadTime",
    "QueueTime",
    "CPUUtilization",
    "MemoryUsed",
    "MemoryUtilization",
)
DOMAIN_METRICS = (
    "ForecastsServed",
    "RequestsRejected",
    "BooksServed",
    "ScenarioPaths",
    "ParseTime",
    "ForwardTime",
    "ResponseTime",
)
#: Dashboard variables and what promtool gets in their place.
VARIABLES = {"$__rate_interval": "1m", "$model": ".*", "$job": ".*"}
#: The handler's metrics declarations: config.properties names it (metrics_config=).
METRICS_CONFIG = ROOT / "metrics_config.yaml"


def test_dashboard_structure_and_metric_names():
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "model", "job"} <= variables
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}" and panel["targets"], panel["title"]
    exprs = [target["expr"] for _, target in dashboard_targets()]
    for metric in BUILTIN_METRICS + DOMAIN_METRICS:
        assert any(re.search(rf"\b{metric}\{{", expr) for expr in exprs), f"no panel shows {metric}"
    for expr in exprs:
        # TorchServe labels its ts_* metrics model_name, the backend (handler) metrics ModelName.
        for metric in re.findall(r"\b(ts_\w+)\{([^}]*)\}", expr):
            assert "ModelName" not in metric[1], expr
        for metric in re.findall(r"\b(HandlerTime|PredictionTime|" + "|".join(DOMAIN_METRICS) + r")\{([^}]*)\}", expr):
            assert "ModelName" in metric[1] and "model_name" not in metric[1], expr
    assert any("by (Reason)" in expr and "RequestsRejected" in expr for expr in exprs)
    # the stage histogram: a quantile per stage from its buckets
    assert any("histogram_quantile(0.99" in e and "StageSeconds_bucket{" in e and "le, Stage" in e for e in exprs)


def dashboard_targets() -> list[tuple[dict, dict]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [(panel, target) for panel in dashboard["panels"] for target in panel.get("targets", [])]


def test_dashboard_queries_are_valid_promql(tmp_path):
    promtool = debian_tool("promtool", "prometheus")
    rules = []
    for panel, target in dashboard_targets():
        expr = target["expr"]
        for variable, value in VARIABLES.items():
            expr = expr.replace(variable, value)
        rules.append({"record": f"dashboard:panel{panel['id']}:{target['refId']}", "expr": expr})
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = run([promtool, "check", "rules", str(path)])
    assert done.returncode == 0, done.stdout + done.stderr


def test_dashboard_domain_metrics_match_the_handlers_metrics_config():
    path, config = METRICS_CONFIG, yaml.safe_load(METRICS_CONFIG.read_text())
    assert "metrics_config=@APP_DIR@/metrics_config.yaml" in (ROOT / "config.properties").read_text().splitlines()
    declared = {}
    for metric_type, entries in config["model_metrics"].items():
        for entry in entries or []:
            declared[entry["name"]] = (metric_type, set(entry.get("dimensions") or []))
    for name in DOMAIN_METRICS:
        assert name in declared, f"{path} does not declare {name}, which the dashboard shows"
        assert "ModelName" in declared[name][1], f"{path}: {name} lacks the ModelName dimension"
    assert declared["ForecastsServed"][0] == "counter" and declared["RequestsRejected"][0] == "counter"
    assert "Reason" in declared["RequestsRejected"][1]
    for timing in ("ParseTime", "ForwardTime", "ResponseTime"):
        # The dashboard plots them as gauges (TorchServe's add_time default); a histogram needs _bucket queries.
        assert declared[timing][0] == "gauge", f"{timing} is a {declared[timing][0]}: update the dashboard queries"
