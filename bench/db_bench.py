"""Database backup and restore through headway, side by side with raw pg_dump -Fc and pg_restore, in one run.

    .venv/bin/python -m bench.db_bench              # pgbench scale 60 (~1 GB); writes the results and the docs
    .venv/bin/python -m bench.db_bench --scale 5    # a smoke run; writes bench/results/db-quick-<time>.json only

A managed PostgreSQL of a throwaway app is filled with `pgbench -i -s SCALE` inside its container. Then, on the
same database: raw `pg_dump -Fc` to a file inside the container, and `headway db backup` (pg_dump stream → zstd →
age encryption → sha256 → a file on the host); raw `pg_restore` of that dump into a new database, and headway's
restore of its backup into a new database (one streamed pass: decryption, zstd and the sha256 check on the way
into pg_restore; the new database counts only once the checksum matched). Throughput
is the database's size on disk divided by the wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import pyrage

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from headway.engine import exec_stream  # noqa: E402
from headway.data.pipeline import ZSTD_LEVEL  # noqa: E402
from headway.engine import labels as L  # noqa: E402
from headway.service import Headway  # noqa: E402

RESULTS = REPO / "bench" / "results"
DOC = REPO / "docs" / "benchmarks.md"
START, END = "<!-- bench:db:start -->", "<!-- bench:db:end -->"
TARGET = 0.9


def log(msg: str) -> None:
    print(f"[db-bench] {msg}", file=sys.stderr, flush=True)


def sh(hw: Headway, cid: str, script: str, env: dict[str, str] | None = None) -> str:
    code, out, err = exec_stream.run(hw.engine.client, cid, ["sh", "-c", script], env=env, timeout=7200)
    if code != 0:
        raise SystemExit(f"`{script}` failed ({code}): {err[-2000:]}")
    return out


def timed(fn: Any) -> tuple[float, Any]:
    started = time.monotonic()
    out = fn()
    return time.monotonic() - started, out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.db_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=int, default=60, help="pgbench scale factor (60 ≈ 1 GB)")
    parser.add_argument("--rounds", type=int, default=4,
                        help="interleaved rounds, the order alternating; medians are reported")
    args = parser.parse_args(argv)
    full = args.scale == 60
    work = Path(tempfile.mkdtemp(prefix="headway-db-bench-"))
    name = f"dbbench{uuid.uuid4().hex[:6]}"
    key = pyrage.x25519.Identity.generate()
    (work / "app").mkdir()
    (work / "app" / "headway.yml").write_text(
        f"app: {name}\nroles:\n  web: {{port: 8000}}\ndatabases:\n  db:\n    engine: postgres\n"
        f"    backup: {{encrypt_to: [{key.to_public()}]}}\n"
        f"storage:\n  local: {{path: {work / 'backups'}}}\nenvironments:\n  production: {{}}\n")
    hw = Headway.open("production", config=work / "app" / "headway.yml", state_dir=work / "state")
    svc = hw.databases()
    report: dict[str, Any] = {"benchmark": "database backup and restore", "scale": args.scale,
                              "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                              "machine": machine(), "settings": {"zstd_level": ZSTD_LEVEL, "encryption": "age X25519",
                                                                  "storage": "local directory on the host",
                                                                  "order": "alternating, CHECKPOINT before each, "
                                                                           "autovacuum off"}}
    try:
        svc.dbs.ensure()
        spec = svc.dbs.spec("db")
        cid = svc.dbs.container(spec).id  # type: ignore[union-attr]
        db = spec.database
        env = {"PGUSER": spec.user, "PGDATABASE": db}
        log(f"pgbench -i -s {args.scale}")
        t_init, _ = timed(lambda: sh(hw, cid, f"pgbench -i -q -s {args.scale} {db}", env))
        sh(hw, cid, "psql -q -c 'VACUUM ANALYZE' -c CHECKPOINT", env)
        # autovacuum off in this throwaway server: otherwise it processes the tables one side just restored while
        # the other side is being timed
        sh(hw, cid, "psql -q -c 'ALTER SYSTEM SET autovacuum = off' -c 'SELECT pg_reload_conf()'", env)
        size = int(sh(hw, cid, f"psql -A -t -c \"SELECT pg_database_size('{db}')\"", env).strip())
        rows = int(sh(hw, cid, "psql -A -t -c 'SELECT count(*) FROM pgbench_accounts'", env).strip())
        log(f"database {size / 1e9:.2f} GB, {rows:,} accounts (generated in {t_init:.0f}s)")
        report["database"] = {"bytes": size, "pgbench_accounts": rows, "generate_s": round(t_init, 1)}

        ep = svc.dbs.endpoint(spec)
        times: dict[str, list[float]] = {"raw_dump": [], "hw_dump": [], "raw_restore": [], "hw_restore": []}
        check = "SELECT count(*) FROM pgbench_accounts"
        backups: list[Any] = []

        def raw_dump() -> None:
            sh(hw, cid, f"pg_dump -Fc -d {db} -f /tmp/raw.dump", env)

        def hw_dump() -> None:
            backups.append(svc.backup("db"))

        def raw_restore() -> None:
            sh(hw, cid, "pg_restore --no-owner -d raw_restore /tmp/raw.dump", env)

        def hw_restore() -> None:
            # as `db restore` does for PostgreSQL: one pass, checksum and decryption checked on the way into a new
            # database, which is used only once the checksum matched
            svc.restore_into(backups[-1], cid, ep, "hw_restore", [key])

        def run(label: str, fn: Any) -> None:
            sh(hw, cid, "psql -q -c CHECKPOINT", env)  # each starts clean: no dirty pages left by the one before
            t, _ = timed(fn)
            times[label].append(t)

        # interleaved rounds, medians reported: a shared host is noisy; the order alternates between rounds, so
        # that neither side always runs second (after the other's writes)
        for n in range(args.rounds):
            first = n % 2 == 0
            log(f"round {n + 1}/{args.rounds}: raw pg_dump -Fc, headway db backup ({'raw' if first else 'headway'} "
                "first)")
            for label, fn in ([("raw_dump", raw_dump), ("hw_dump", hw_dump)] if first else
                              [("hw_dump", hw_dump), ("raw_dump", raw_dump)]):
                run(label, fn)
            raw_dump_bytes = int(sh(hw, cid, "stat -c %s /tmp/raw.dump").strip())
            log(f"round {n + 1}/{args.rounds}: raw pg_restore, headway restore into a new database")
            sh(hw, cid, "createdb raw_restore && createdb hw_restore", env)
            for label, fn in ([("raw_restore", raw_restore), ("hw_restore", hw_restore)] if first else
                              [("hw_restore", hw_restore), ("raw_restore", raw_restore)]):
                run(label, fn)
            for target in ("raw_restore", "hw_restore"):
                got = int(sh(hw, cid, f"psql -A -t -d {target} -c '{check}'", env).strip())
                assert got == rows, f"{target}: {got} rows, expected {rows}"
            sh(hw, cid, "dropdb raw_restore && dropdb hw_restore", env)
        rec = backups[-1]
        sh(hw, cid, "rm -f /tmp/raw.dump")
        t_raw_dump, t_hw_dump = statistics.median(times["raw_dump"]), statistics.median(times["hw_dump"])
        t_raw_restore, t_hw_restore = statistics.median(times["raw_restore"]), statistics.median(times["hw_restore"])
        report["rounds"] = {k: [round(x, 2) for x in v] for k, v in times.items()}
        log("headway db restore (safety backup, restore beside, swap)")
        t_full, full_result = timed(lambda: hw.restore_database(rec.id, identities=[key], confirmed=True))

        def mbps(seconds: float) -> float:
            return round(size / seconds / 1e6, 1)

        report["results"] = {
            "raw_pg_dump": {"seconds": round(t_raw_dump, 2), "mb_per_s": mbps(t_raw_dump),
                            "output_bytes": raw_dump_bytes},
            "headway_backup": {"seconds": round(t_hw_dump, 2), "mb_per_s": mbps(t_hw_dump),
                               "output_bytes": rec.size, "dump_bytes": rec.raw_size, "backup_id": rec.id},
            "raw_pg_restore": {"seconds": round(t_raw_restore, 2), "mb_per_s": mbps(t_raw_restore)},
            "headway_restore": {"seconds": round(t_hw_restore, 2), "mb_per_s": mbps(t_hw_restore)},
            "headway_db_restore_full": {"seconds": round(t_full, 2), "held_s": full_result.held_s},
        }
        report["ratios"] = {"backup": round(t_raw_dump / t_hw_dump, 2),
                            "restore": round(t_raw_restore / t_hw_restore, 2)}
        log(json.dumps(report["results"], indent=1))
        log(f"throughput vs raw: backup {report['ratios']['backup']}×, restore {report['ratios']['restore']}×")
    finally:
        for c in hw.engine.containers(L.selector(app=name)):
            hw.engine.remove(c, volumes=True)
        for v in hw.engine.volumes(L.selector(app=name)):
            v.remove(force=True)
        hw.engine.remove_network(L.network_name(name, "production"))
        shutil.rmtree(work, ignore_errors=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = report["started_utc"].replace("-", "").replace(":", "")
    out = RESULTS / (f"db-{stamp}.json" if full else f"db-quick-{stamp}.json")
    out.write_text(json.dumps(report, indent=2) + "\n")
    if full:
        latest = RESULTS / "db-latest.json"
        if latest.exists():  # the run this one replaces, for comparison
            before = json.loads(latest.read_text())
            report["previous"] = {"started_utc": before.get("started_utc"), "ratios": before.get("ratios"),
                                  "results": before.get("results"),
                                  "order": before.get("settings", {}).get("order", "raw first in every round")}
        latest.write_text(json.dumps(report, indent=2) + "\n")
        write_doc(report)
        log(f"wrote {out.relative_to(REPO)}, bench/results/db-latest.json and docs/benchmarks.md")
    else:
        log(f"wrote {out.relative_to(REPO)}")
    return 0


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {"cpus": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version()}
    try:
        model = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text())
        info["cpu"] = model.group(1).strip() if model else "?"
        mem = re.search(r"MemTotal:\s*(\d+)", Path("/proc/meminfo").read_text())
        info["memory_gib"] = round(int(mem.group(1)) / 1024 / 1024, 1) if mem else None
        info["docker"] = subprocess.run(["docker", "version", "-f", "{{.Server.Version}}"], capture_output=True,
                                        text=True).stdout.strip()
        info["load"] = Path("/proc/loadavg").read_text().split()[:3]
    except (OSError, AttributeError):
        pass
    return info


def previous(report: dict[str, Any]) -> list[str]:
    prev = report.get("previous")
    if not prev or not prev.get("ratios"):
        return []
    r, ratio = prev.get("results") or {}, prev["ratios"]

    def secs(key: str) -> str:
        return f"{r[key]['seconds']:.1f} s" if key in r else "?"

    return ["", f"The run this one replaced ({str(prev['started_utc']).replace('T', ' ')[:16]} UTC, order: "
            f"{prev['order']}): backup {ratio['backup']}× ({secs('headway_backup')} against "
            f"{secs('raw_pg_dump')}), restore {ratio['restore']}× ({secs('headway_restore')} against "
            f"{secs('raw_pg_restore')})."]


def write_doc(report: dict[str, Any]) -> None:
    r, db, m = report["results"], report["database"], report["machine"]
    ratio = report["ratios"]

    def row(label: str, key: str, note: str = "") -> str:
        x = r[key]
        size = f"{x['output_bytes'] / 1e6:,.0f} MB" if "output_bytes" in x else "—"
        return f"| {label} | {x['seconds']:.1f} | {x.get('mb_per_s', 0):,.1f} | {size} | {note} |"

    verdict = lambda v: "PASS" if v >= TARGET else "FAIL"  # noqa: E731
    lines = [
        START,
        "## Database backup and restore",
        "",
        f"Measured {report['started_utc'].replace('T', ' ')[:16]} UTC on {m.get('cpus')} CPU cores "
        f"({m.get('cpu', '?')}), {m.get('memory_gib')} GiB RAM, Docker Engine {m.get('docker', '?')}; load "
        f"{' / '.join(m.get('load', []))} at the start. PostgreSQL 15, `pgbench -i -s {report['scale']}`: "
        f"{db['bytes'] / 1e9:.2f} GB on disk, {db['pgbench_accounts']:,} rows in pgbench_accounts. Medians of "
        f"{len(report['rounds']['raw_dump'])} interleaved rounds, raw first in odd rounds and headway first in even "
        "ones, a CHECKPOINT before each timed operation, autovacuum off in the benchmark's server (all rounds in "
        "the JSON).",
        "",
        "| operation | wall time s | throughput MB/s (database size / time) | output | what it does |",
        "|---|---:|---:|---:|---|",
        row("raw `pg_dump -Fc` (to a file in the container)", "raw_pg_dump", "zlib inside pg_dump"),
        row("`headway db backup`", "headway_backup",
            f"pg_dump -Fc -Z1 stream → zstd {report['settings']['zstd_level']} → age → sha256 → file on the host; "
            "exact row counts in the dump's own snapshot, during the dump"),
        row("raw `pg_restore` (from that file)", "raw_pg_restore", "into a new database"),
        row("headway restore into a new database", "headway_restore",
            "file → sha256 + age + zstd → pg_restore, one pass; kept only if the checksum matched"),
        f"| `headway db restore` (whole) | {r['headway_db_restore_full']['seconds']:.1f} | — | — | safety backup + "
        f"restore beside + swap; requests held {r['headway_db_restore_full']['held_s']:.2f} s |",
        "",
        "### Targets",
        "",
        f"- **{verdict(ratio['backup'])}** — backup throughput ≥ {TARGET}× raw `pg_dump -Fc`: measured "
        f"{ratio['backup']}×.",
        f"- **{verdict(ratio['restore'])}** — restore throughput ≥ {TARGET}× raw `pg_restore`: measured "
        f"{ratio['restore']}×.",
        "",
        "Every round, in seconds: " + "; ".join(
            f"{label} {', '.join(f'{x:.1f}' for x in report['rounds'][key])}"
            for label, key in (("raw pg_dump", "raw_dump"), ("headway backup", "hw_dump"),
                               ("raw pg_restore", "raw_restore"), ("headway restore", "hw_restore"))) +
        f". The host is shared and noisy: rounds of the same operation differ by up to "
        f"{max(max(v) / min(v) for v in report['rounds'].values()):.1f}×; the targets use the medians.",
        *previous(report),
        "",
        "Generated by `.venv/bin/python -m bench.db_bench` (results in bench/results/db-latest.json).",
        END,
    ]
    block = "\n".join(lines)
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    if START in text and END in text:
        text = text[:text.index(START)] + block + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    DOC.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
