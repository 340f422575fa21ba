"""Request metrics from the real proxy's access log, served and scraped over HTTP."""

from __future__ import annotations

import time
from collections import Counter

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from headway.observe.access_log import AccessLogTail
from headway.observe.metrics import MetricsRegistry, serve, tail_and_feed

pytestmark = [pytest.mark.docker, pytest.mark.proxy]


def test_metrics_count_what_the_proxy_answered(tiny_app, proxy, tmp_path):
    tiny_app.set_behavior(fail_every=4)  # 1 in 4 requests to / answers 500, in each container
    hw = tiny_app.headway()
    hw.deploy(version="v1")
    tail = AccessLogTail(proxy.proxy.access_log, tmp_path / "position.json")  # from the end of the log as it is now
    registry = MetricsRegistry()
    key = (tiny_app.name, "production", "v1", "web")
    seen: Counter[str] = Counter()
    with httpx.Client(timeout=5) as client:
        for _ in range(40):
            seen[f"{client.get(tiny_app.url()).status_code // 100}xx"] += 1
        slow = client.get(tiny_app.url(path="/slow"))  # slow_seconds defaults to 1 s
    assert slow.status_code == 200 and seen["5xx"] >= 1 and seen["2xx"] >= 1
    seen["2xx"] += 1
    deadline = time.monotonic() + 15
    while sum(registry.requests.counts(key).values()) < 41 and time.monotonic() < deadline:
        tail_and_feed(tail, registry)  # nginx writes each line when the request ends: poll until all are there
    assert registry.requests.counts(key) == dict(seen)
    w = registry.requests.window(key, 60)
    assert w.requests == 41 and w.server_errors == seen["5xx"]
    assert 1.0 <= w.p99 < 5 and w.p50 < 0.5  # the one slow request is the slowest

    with serve(registry, "127.0.0.1", 0) as server:
        scrape = httpx.get(server.url, timeout=5)
    assert scrape.status_code == 200 and scrape.headers["content-type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(scrape.text)}
    ours = {"app": tiny_app.name, "environment": "production", "release": "v1", "role": "web"}
    requests = {s.labels["code"]: s.value for s in families["headway_http_requests"].samples
                if {k: s.labels[k] for k in ours} == ours}
    assert requests == {code: float(n) for code, n in seen.items()}
    duration = {(s.name, s.labels.get("le")): s.value for s in families["headway_http_request_duration_seconds"].samples
                if {k: s.labels[k] for k in ours} == ours}
    assert duration[("headway_http_request_duration_seconds_count", None)] == 41
    assert duration[("headway_http_request_duration_seconds_bucket", "0.75")] == 40  # all but the slow one
    assert duration[("headway_http_request_duration_seconds_bucket", "+Inf")] == 41
    assert duration[("headway_http_request_duration_seconds_sum", None)] >= 1.0
