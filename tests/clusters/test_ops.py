"""The Grafana dashboard and the Prometheus rules query only metrics driftline serves: the
worker's, the retrainer's and a consumer service's ModelSubscriber's. (The loop on S3,
``tests/streams/loop/test_s3_loop.py``, scrapes the three from running processes.)"""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import CollectorRegistry

from driftline.streams.metrics import MonitorMetrics, RetrainerMetrics
from driftline.streams.sdk.metrics import SubscriberMetrics

OPS = Path(__file__).resolve().parents[2] / "ops"


def _served() -> set[str]:
    subscriber = CollectorRegistry()
    SubscriberMetrics("p", "champion", subscriber)
    names = set()
    for registry in (MonitorMetrics("p").registry, RetrainerMetrics("p").registry, subscriber):
        for family in registry.collect():
            suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}
            names.update(family.name + s for s in suffixes.get(family.type, [""]))
    return names


def _queried(text: str) -> set[str]:
    return set(re.findall(r"\bdriftline_[a-z_]+", text))


def test_alert_rules_and_dashboard_use_served_metrics() -> None:
    rules = (OPS / "prometheus" / "driftline-alerts.yml").read_text()
    dashboard = json.loads((OPS / "grafana" / "driftline-dashboard.json").read_text())
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    exprs += dashboard["templating"]["list"][1]["query"]
    served = _served()
    for text in (rules, exprs):
        queried = _queried(text)
        assert queried and queried <= served, queried - served
    # Each part has panels and alerts: the monitor, the retrainer and the subscribers.
    for prefix in ("driftline_trainings", "driftline_gate", "driftline_subscriber_refusals"):
        assert prefix in exprs, prefix
    for prefix in ("driftline_trainings", "driftline_retrainer", "driftline_subscriber_"):
        assert prefix in rules, prefix
    assert len(re.findall(r"- alert: ", rules)) >= 12


def test_panels_do_not_overlap() -> None:
    dashboard = json.loads((OPS / "grafana" / "driftline-dashboard.json").read_text())
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        g = panel["gridPos"]
        mine = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not mine & cells, panel["title"]
        cells |= mine
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
