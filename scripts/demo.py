"""The headway demo: the example shop app deployed to production and staging on this machine, then redeployed
and rolled back under a steady load, with every request counted."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.loadgen import SteadyLoad  # noqa: E402

APP = REPO / "examples" / "shop"
HEADWAY = [str(REPO / ".venv" / "bin" / "headway")]


def say(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def headway(*args: str) -> None:
    print("$ headway " + " ".join(args), flush=True)
    code = subprocess.call([*HEADWAY, *args], cwd=APP)
    if code != 0:
        sys.exit(f"headway {' '.join(args)} failed with exit code {code}")


def ensure_secrets() -> None:
    for env in ("production", "staging"):
        path = APP / ".headway" / f"secrets.{env}"
        if not path.exists():
            path.parent.mkdir(exist_ok=True)
            path.write_text(f"POSTGRES_PASSWORD={secrets.token_urlsafe(24)}\n")
            path.chmod(0o600)
            print(f"wrote {path.relative_to(REPO)} (a generated database password, mode 600)")


def under_load(url: str, args: list[str], minimum: int = 2000) -> dict[str, object]:
    with SteadyLoad(url, rate=200, max_seconds=120) as load:
        load.wait_for(200)
        started = time.monotonic()
        headway(*args)
        took = time.monotonic() - started
        load.wait_for(max(minimum, load.result.sent + 200), timeout=60)
    summary = load.result.summary()
    summary["operation_s"] = round(took, 2)
    return summary


def main() -> None:
    os.chdir(APP)
    ensure_secrets()
    say("boot headway's proxy (nginx, shared by every app on this host)")
    headway("proxy", "boot")
    say("deploy production and staging")
    stamp = time.strftime("%H%M%S")
    headway("deploy", "-e", "production", "--version", f"demo-{stamp}-a")
    headway("deploy", "-e", "staging", "--version", f"demo-{stamp}-a")
    prod = "http://127.0.0.1:8080/"
    results = {}
    say("redeploy production while 200 requests/s flow through nginx")
    results["deploy"] = under_load(prod, ["deploy", "-e", "production", "--version", f"demo-{stamp}-b"])
    say("roll production back, still under load")
    results["rollback"] = under_load(prod, ["rollback", "-e", "production"])
    say("what happened")
    print(f"{'operation':<10} {'requests':>9} {'failed':>7} {'p50 ms':>7} {'p99 ms':>7} {'took s':>7}  releases seen")
    for name, r in results.items():
        print(f"{name:<10} {r['sent']:>9} {r['non_2xx'] + r['errors']:>7} {r['p50_ms']:>7} {r['p99_ms']:>7} "  # type: ignore[operator]
              f"{r['operation_s']:>7}  {r['releases']}")
    headway("status", "-e", "production")
    headway("status", "-e", "staging")
    say("try it")
    print("  production: http://localhost:8080/   (or http://shop.localhost/ through the proxy's port 80)")
    print("  staging:    http://localhost:8081/   (or http://staging.shop.localhost/)")
    print("  history:    cd examples/shop && ../../.venv/bin/headway releases -e production")
    failed = sum(int(r["non_2xx"]) + int(r["errors"]) for r in results.values())  # type: ignore[call-overload]
    if failed:
        sys.exit(f"{failed} request(s) failed during the demo")
    print("\n0 failed requests.")


if __name__ == "__main__":
    main()
