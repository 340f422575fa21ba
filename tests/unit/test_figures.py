"""`headway metrics` and `headway top` read the agent's store: the latest figures and the last hour."""

from __future__ import annotations

from pathlib import Path

from headway.observe.figures import environment_figures, sparkline
from headway.observe.store import MetricStore


def test_sparkline_scales_to_the_highest_point_and_leaves_gaps() -> None:
    line = sparkline([(0.0, 1.0), (60.0, 4.0), (180.0, 2.0)], 0.0, 240.0)
    assert line == "▂█ ▄"


def test_environment_figures_from_the_store(tmp_path: Path) -> None:
    store = MetricStore(tmp_path / "agent" / "metrics")
    now = 1_800_000_000.0
    env = {"app": "shop", "environment": "production"}
    box = {**env, "release": "abc", "role": "web", "container": "shop-production-web-3-1"}
    samples = []
    for i in range(30):
        t = now - 1800 + i * 60
        samples += [("http_request_rate", env, 10.0 + i, t), ("http_server_error_ratio", env, 0.01, t),
                    ("http_p95_seconds", env, 0.2, t), ("up", {**env, "check": "proxy"}, 1.0, t),
                    ("container_memory_bytes", box, 50e6, t), ("container_cpu_ratio", box, 0.05, t)]
    store.add(samples)
    store.close()
    f = environment_figures(tmp_path, "shop", "production", now=now)
    assert f["requests_per_s"] == 39.0 and f["up_proxy"] == 1.0 and f["p95_s"] == 0.2
    assert len(f["series"]["requests_per_s"]) == 30
    assert f["containers"] == [{"container": "shop-production-web-3-1", "role": "web", "release": "abc",
                                "memory_bytes": 50e6, "cpu_ratio": 0.05}]
    # another environment's figures are not mixed in
    assert environment_figures(tmp_path, "shop", "staging", now=now)["requests_per_s"] is None
