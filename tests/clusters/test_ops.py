"""The Grafana dashboard and the Prometheus rules query only metrics a worker serves."""

from __future__ import annotations

import json
import re
from pathlib import Path

from driftline.streams.metrics import MonitorMetrics

OPS = Path(__file__).resolve().parents[2] / "ops"


def _served() -> set[str]:
    names = set()
    for family in MonitorMetrics("p").registry.collect():
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}
        names.update(family.name + s for s in suffixes.get(family.type, [""]))
    return names


def _queried(text: str) -> set[str]:
    return set(re.findall(r"\bdriftline_[a-z_]+", text)) - {"driftline_monitor"}


def test_alert_rules_and_dashboard_use_served_metrics() -> None:
    rules = (OPS / "prometheus" / "driftline-alerts.yml").read_text()
    dashboard = json.loads((OPS / "grafana" / "driftline-dashboard.json").read_text())
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    exprs += dashboard["templating"]["list"][1]["query"]
    served = _served()
    for text in (rules, exprs):
        queried = _queried(text)
        assert queried and queried <= served, queried - served
    assert len(re.findall(r"- alert: ", rules)) >= 5
