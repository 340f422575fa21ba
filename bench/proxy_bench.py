"""The cost of headway's proxy, and how fast a bad canary is rolled back.

One run, side by side: the same app container reached directly, through headway's nginx over plain HTTP, and through
it over TLS — latency at a steady 200 requests/s (bench.loadgen) and maximum throughput (wrk). Then a canary whose
release answers 500 to half of its requests is deployed under load, and the time from the first error a client saw
to the last request the bad release served is measured.

Run: .venv/bin/python -m bench.proxy_bench [--quick]. Writes bench/results/proxy-*.json and the section between
<!-- bench:proxy:start --> and <!-- bench:proxy:end --> in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.deploy_ops import free_port, headway_argv, log, run
from bench.loadgen import SteadyLoad
from bench.run import machine_info

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "tests" / "fixtures" / "apps" / "tiny"
RESULTS = REPO / "bench" / "results"
DOC = REPO / "docs" / "benchmarks.md"
START, END = "<!-- bench:proxy:start -->", "<!-- bench:proxy:end -->"
DOMAIN = "bench.headway.test"


def self_signed(directory: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, DOMAIN)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=90))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(DOMAIN)]), critical=False)
            .sign(key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                          serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
    os.chmod(directory / "key.pem", 0o600)


class TinyStack:
    """The small fixture app (one web replica) behind its own headway proxy, with a TLS certificate of its own."""

    def __init__(self, workdir: Path) -> None:
        suffix = uuid.uuid4().hex[:6]
        self.app = f"benchproxy{suffix}"
        self.proxy_name = f"headway-proxy-bench-{suffix}"
        self.dir = workdir / "app"
        self.state_dir = workdir / "state"
        self.http_port, self.https_port, self.control_port = free_port(), free_port(), free_port()
        self.port = free_port()
        self.env = {**os.environ, "HEADWAY_STATE_DIR": str(self.state_dir)}

    def prepare(self) -> None:
        shutil.copytree(TINY, self.dir)
        self.state_dir.mkdir(parents=True)
        self_signed(self.dir / "certs")
        text = (self.dir / "headway.yml").read_text()
        text = text.replace("app: tiny", f"app: {self.app}").replace("replicas: 2", "replicas: 1")
        text = text.replace("    port: 18480\n", f"    port: {self.port}\n    domains: [{DOMAIN}]\n"
                            "    tls: {certificate: certs/cert.pem, key: certs/key.pem}\n")
        (self.dir / "headway.yml").write_text(text)
        run([*headway_argv(), "proxy", "boot", "--http-port", str(self.http_port), "--https-port",
             str(self.https_port), "--control-port", str(self.control_port), "--name", self.proxy_name],
            cwd=self.dir, env=self.env, timeout=120)

    def headway(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run([*headway_argv(), *args], cwd=self.dir, env=self.env, timeout=600, check=check)

    def behave(self, **behavior: object) -> None:
        (self.dir / "behavior.json").write_text(json.dumps(behavior))

    def container_url(self) -> str:
        from headway.engine.docker import DockerEngine
        from headway.engine import labels as L

        engine = DockerEngine()
        [web] = engine.containers(L.selector(app=self.app, environment="production", role="web"),
                                  include_stopped=False)
        return f"http://{engine.ip_address(web)}:8000/"

    def close(self) -> None:
        self.headway("remove", "-e", "production", "--yes", check=False)
        subprocess.run(["docker", "rm", "-f", self.proxy_name], capture_output=True, check=False)
        images = subprocess.run(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}", self.app],
                                capture_output=True, text=True, check=False).stdout.split()
        if images:
            subprocess.run(["docker", "rmi", "-f", *images], capture_output=True, check=False)


def steady(url: str, seconds: float) -> dict[str, Any]:
    with SteadyLoad(url, rate=200, max_seconds=seconds + 5, track_release=False) as load:
        load.wait_for(int(200 * seconds), timeout=seconds + 10)
    return load.result.summary()


def wrk(url: str, seconds: int) -> dict[str, Any]:
    out = subprocess.run(["wrk", "-t2", "-c32", f"-d{seconds}s", "--latency", url], capture_output=True, text=True,
                         check=True, timeout=seconds + 30).stdout

    def ms(label: str) -> float:
        m = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not m:
            return float("nan")
        return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"requests_per_s": float(rps.group(1)) if rps else 0.0, "p50_ms": ms("50"), "p99_ms": ms("99"),
            "socket_errors": errors.group(1) if errors else "", "non_2xx": int(non2xx.group(1)) if non2xx else 0}


def canary_rollback(stack: TinyStack, seconds_cap: float) -> dict[str, Any]:
    text = (stack.dir / "headway.yml").read_text()
    text = text.replace("  drain_timeout: 5s\n", "  drain_timeout: 5s\n  strategy: canary\n  canary:\n"
                        "    steps: [{weight: 10, duration: 60s}, {weight: 50, duration: 60s}]\n"
                        "    analysis: {interval: 2s, min_requests: 10, success_rate: 99, p95: 500ms}\n")
    (stack.dir / "headway.yml").write_text(text)
    stack.behave(fail_every=2)
    timeline: list[tuple[float, float, str, str | None]] = []
    url = f"http://127.0.0.1:{stack.port}/"
    with SteadyLoad(url, rate=200, max_seconds=seconds_cap, timeline=timeline) as load:
        load.wait_for(200)
        t0 = time.monotonic()
        result = stack.headway("deploy", "-e", "production", "--version", "bad", "--json", check=False)
        took = time.monotonic() - t0
        load.wait_for(load.result.sent + 200)
    bad_errors = [end for _, end, status, _ in timeline if status.startswith("5")]
    bad_served = [end for _, end, status, release in timeline if release == "bad" or status.startswith("5")]
    first, last = (min(bad_errors), max(bad_served)) if bad_errors else (0.0, 0.0)
    return {"exit_code": result.returncode, "deploy_wall_s": round(took, 2), "requests": load.result.sent,
            "failed": load.result.failed, "first_error_to_full_rollback_s": round(last - first, 2),
            "analysis_interval_s": 2.0, "canary_weight": 10,
            "reason": next((ln for ln in result.stderr.splitlines() if "rolled back" in ln), "").strip()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="shorter runs; leaves docs/benchmarks.md alone")
    args = parser.parse_args(argv)
    seconds = 3 if args.quick else 10
    workdir = Path(tempfile.mkdtemp(prefix="headway-proxy-bench-"))
    stack = TinyStack(workdir)
    report: dict[str, Any] = {"started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                              "machine": machine_info(), "quick": args.quick, "targets": {}}
    try:
        stack.prepare()
        stack.headway("deploy", "-e", "production", "--version", "v1")
        urls = {"direct to the container": stack.container_url(),
                "through headway's nginx (HTTP)": f"http://127.0.0.1:{stack.port}/",
                "through headway's nginx (TLS)": f"https://127.0.0.1:{stack.https_port}/"}
        for name, url in urls.items():
            log(f"{name}: steady 200 req/s for {seconds}s, then wrk for {seconds}s")
            report["targets"][name] = {"steady": steady(url, seconds), "max": wrk(url, seconds)}
        log("canary: a release failing half its requests, under 200 req/s")
        report["canary"] = canary_rollback(stack, 120)
    finally:
        stack.close()
        shutil.rmtree(workdir, ignore_errors=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    RESULTS.mkdir(parents=True, exist_ok=True)
    prefix = "proxy-quick" if args.quick else "proxy"
    (RESULTS / f"{prefix}-{stamp}.json").write_text(json.dumps(report, indent=2) + "\n")
    if not args.quick:
        (RESULTS / "proxy-latest.json").write_text(json.dumps(report, indent=2) + "\n")
        write_doc(report)
    print(render(report))
    return 0


def render(report: dict[str, Any]) -> str:
    m = report["machine"]
    rows = []
    direct = report["targets"].get("direct to the container", {})
    for name, t in report["targets"].items():
        s, x = t["steady"], t["max"]
        ratio = (x["requests_per_s"] / direct["max"]["requests_per_s"]) if direct else 0.0
        failed = s["non_2xx"] + s["errors"]
        rows.append(f"| {name} | {s['p50_ms']:.2f} | {s['p99_ms']:.2f} | {failed} "
                    f"| {x['requests_per_s']:,.0f} | {ratio:.2f}× | {x['p50_ms']:.2f} | {x['p99_ms']:.2f} |")
    c = report.get("canary", {})
    return "\n".join([
        START,
        "## Proxy overhead and canary rollback",
        "",
        f"Measured {report['started'][:19].replace('T', ' ')} UTC on {m.get('nproc', '?')} CPU cores, "
        f"Docker Engine {m.get('docker_server', '?')} (headway {m.get('headway_commit', '?')}), "
        "with `python -m bench.proxy_bench`. The app is the small test app "
        "(Python's http.server, one replica); the load generator, nginx and the app share the machine's 2 cores, "
        "so compare the rows with each other, not with other machines.",
        "",
        "| path | p50 ms at 200 req/s | p99 ms at 200 req/s | failed | max req/s (wrk, 32 conns) | vs direct "
        "| wrk p50 ms | wrk p99 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        f"**Bad canary**: a release answering 500 to every second request, deployed with `strategy: canary` "
        f"(first step {c.get('canary_weight')}%, analysis every {c.get('analysis_interval_s')} s) under 200 req/s. "
        f"From the first 500 a client saw to the last request the bad release served: "
        f"**{c.get('first_error_to_full_rollback_s')} s**; {c.get('failed')} of {c.get('requests')} requests failed "
        f"(all from the canary's share); `headway deploy` exited {c.get('exit_code')} "
        f"after {c.get('deploy_wall_s')} s. {c.get('reason', '')}",
        "",
        "Re-run with `.venv/bin/python -m bench.proxy_bench` (`--quick` for a smoke run that leaves this page alone). "
        "Raw numbers: [bench/results/proxy-latest.json](../bench/results/proxy-latest.json).",
        END,
    ])


def write_doc(report: dict[str, Any]) -> None:
    section = render(report)
    text = DOC.read_text()
    if START in text and END in text:
        head, rest = text.split(START, 1)
        _, tail = rest.split(END, 1)
        text = head + section + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    DOC.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
