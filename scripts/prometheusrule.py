#!/usr/bin/env python3
"""Print deploy/prometheus/alerts.yml as a Prometheus Operator PrometheusRule.

The rules have one source, alerts.yml (promtool-tested by alerts.test.yml); the
PrometheusRule is generated from it and checked into the repository, and
tests/test_kubernetes.py fails when the two disagree. Regenerate with:

    .venv/bin/python scripts/prometheusrule.py > deploy/kubernetes/prometheus-operator/prometheusrule.yaml
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
HEADER = """\
# GENERATED from deploy/prometheus/alerts.yml by scripts/prometheusrule.py: edit
# alerts.yml (and its promtool tests), then regenerate; a test checks they agree.
# Add the label your Prometheus' ruleSelector wants (kube-prometheus-stack:
# release: <its release>).
"""


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (PromQL) as literal blocks, as alerts.yml writes them."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def prometheus_rule(rules: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "stream-sentinel",
            "labels": {
                "app.kubernetes.io/name": "stream-sentinel",
                "app.kubernetes.io/component": "monitor",
            },
        },
        "spec": {"groups": rules["groups"]},
    }


def render() -> str:
    rules = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    body = yaml.dump(
        prometheus_rule(rules), Dumper=_Dumper, sort_keys=False, width=100, allow_unicode=True
    )
    return HEADER + body


if __name__ == "__main__":
    sys.stdout.write(render())
