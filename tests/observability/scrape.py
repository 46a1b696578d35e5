"""Helpers: find a server's metrics port, scrape /metrics and /health over HTTP."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.procs import ServerProcess

METRICS_LINE = re.compile(r"^metrics listening on (\S+):(\d+)$")


def metrics_address(proc: ServerProcess, timeout: float = 10.0) -> str:
    """HOST:PORT from the ``metrics listening on`` line printed after the ready line."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in list(proc.lines):
            match = METRICS_LINE.match(line.strip())
            if match:
                return f"{match.group(1)}:{match.group(2)}"
        time.sleep(0.05)
    raise AssertionError("no 'metrics listening on' line:\n" + proc.output())


def get(address: str, path: str) -> tuple[int, str, str]:
    """(status, content type, body) of GET http://address/path (errors included)."""
    try:
        with urllib.request.urlopen(f"http://{address}{path}", timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(address: str) -> Samples:
    """Every sample of /metrics: (name, sorted labels) -> value."""
    status, content_type, body = get(address, "/metrics")
    assert status == 200, body
    assert content_type.startswith("text/plain")
    out: Samples = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    assert key in samples, f"{name}{labels} not exported; have: {sorted({k[0] for k in samples})}"
    return samples[key]


def health(address: str) -> tuple[int, dict[str, Any]]:
    status, content_type, body = get(address, "/health")
    assert content_type == "application/json"
    return status, json.loads(body)


def json_log_lines(proc: ServerProcess) -> list[dict[str, Any]]:
    """The process's log lines (JSON objects), skipping the plain ready lines."""
    return [json.loads(line) for line in proc.lines if line.startswith("{")]
