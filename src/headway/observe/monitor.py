"""What the agent does every round: check every environment on the host, keep the figures, raise the alerts.

An environment asks to be watched with `monitor.json` in its state directory (observe/spec.py, written by
headway at every deploy, rollback and `headway alerts test`). Each round the agent:

1. reads the proxy's access log from where it stopped (request counts, 5xx share, latency per release and role);
2. per environment: its health check through the proxy and against each live container directly, the
   containers' state, restarts, CPU and memory (from the cgroup files, not `docker stats`);
3. the host's CPU, memory, disk and load (from /proc and statvfs);
4. evaluates the alert rules (observe/alerts.py: a condition must hold for its `for` duration to fire) and sends
   each firing, repeat and resolved notice to the environment's channels (observe/notify.py), and hands each
   autoscaled role's signals to the autoscaler (observe/autoscaler.py); on a swarm's manager, routes the
   replicas the swarm moved (observe/follow.py);
5. keeps every figure in the host's metric store (observe/store.py: 7+ days, bounded) and serves them on
   /metrics for Prometheus.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from headway.engine import labels as L
from headway.observe.alerts import alert_history_path, alert_state_path
from headway.observe.autoscaler import Act, Autoscaler
from headway.observe.follow import Follow, SwarmFollower
from headway.observe.spec import read_specs
from headway.state.files import atomic_write, read_json_object

DATABASE_EVERY = 4  # rounds between two looks at each database's connections and size (a query in its container)
_DATABASE_SQL = {
    "postgres": "SELECT (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()), "
                "pg_database_size(current_database())",
    "mariadb": "SELECT (SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = DATABASE()), "
               "(SELECT COALESCE(SUM(data_length + index_length), 0) FROM information_schema.TABLES "
               "WHERE table_schema = DATABASE())",
}


# -- the host -----------------------------------------------------------------------------------------------
@dataclass
class HostSampler:
    """CPU share from /proc/stat between two samples; memory, load and disk as they are."""

    disk_paths: list[str] = field(default_factory=lambda: ["/var/lib/headway"])
    _last: tuple[int, int] | None = None

    def sample(self) -> dict[str, float]:
        out: dict[str, float] = {}
        try:
            fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
            idle, total = fields[3] + (fields[4] if len(fields) > 4 else 0), sum(fields)
            if self._last is not None and total > self._last[1]:
                out["cpu"] = 1.0 - (idle - self._last[0]) / (total - self._last[1])
            self._last = (idle, total)
        except (OSError, ValueError, IndexError):
            pass
        try:
            info = {line.split(":")[0]: int(line.split()[1]) for line in Path("/proc/meminfo").read_text()
                    .splitlines() if len(line.split()) >= 2}
            out["memory"] = 1.0 - info["MemAvailable"] / info["MemTotal"]
        except (OSError, ValueError, KeyError, ZeroDivisionError):
            pass
        try:
            out["load1"] = float(Path("/proc/loadavg").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass
        for p in self.disk_paths:
            try:
                st = os.statvfs(p)
                out[f"disk:{p}"] = 1.0 - st.f_bavail / st.f_blocks if st.f_blocks else 0.0
            except OSError:
                pass
        return out


def _cgroup_usage(container_id: str) -> tuple[int | None, int | None]:
    """CPU time (ns) and memory (bytes, less the page cache) of a container, from cgroup v1 or v2 files."""
    cpu = mem = None
    candidates = [("/sys/fs/cgroup/cpuacct/docker", "/sys/fs/cgroup/memory/docker"),
                  ("/sys/fs/cgroup/cpuacct/system.slice", "/sys/fs/cgroup/memory/system.slice")]
    for cpu_root, mem_root in candidates:
        for name in (container_id, f"docker-{container_id}.scope"):
            try:
                cpu = int(Path(cpu_root, name, "cpuacct.usage").read_text())
                usage = int(Path(mem_root, name, "memory.usage_in_bytes").read_text())
                stat = dict(line.split() for line in Path(mem_root, name, "memory.stat").read_text().splitlines())
                mem = max(0, usage - int(stat.get("total_inactive_file", 0)))
                return cpu, mem
            except (OSError, ValueError):
                continue
    for name in (f"system.slice/docker-{container_id}.scope", f"docker/{container_id}"):
        try:  # cgroup v2
            stat = dict(line.split() for line in Path("/sys/fs/cgroup", name, "cpu.stat").read_text().splitlines())
            cpu = int(stat["usage_usec"]) * 1000
            mem = int(Path("/sys/fs/cgroup", name, "memory.current").read_text())
            return cpu, mem
        except (OSError, ValueError, KeyError):
            continue
    return None, None


# -- a round ------------------------------------------------------------------------------------------------
class Monitor:
    """`scale` and `follow` are how the agent acts on an environment (the library's scale and reconcile from the
    config kept on the host: headway.service.scale_on_host, recover_on_host); without them it only watches."""

    def __init__(self, root: Path, *, interval: float = 15.0, scale: Act | None = None,
                 follow: Follow | None = None) -> None:
        from headway.observe.access_log import AccessLogTail
        from headway.observe.metrics import MetricsRegistry
        from headway.observe.store import MetricStore

        self.root = root
        self.dir = root / "agent"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.interval = interval
        self.registry = MetricsRegistry()
        self.tail = AccessLogTail(root / "proxy" / "logs" / "access.log", self.dir / "access-log.position")
        self.store = MetricStore(self.dir / "metrics")
        self.host = HostSampler(disk_paths=[str(root)])
        self._cpu: dict[str, tuple[float, int]] = {}  # container id -> (time, cpu ns) of the last round
        self._restarts: dict[str, tuple[int, list[float]]] = {}  # container id -> (restart count, when seen)
        self._evaluators: dict[str, Any] = {}  # app/environment (or "host") -> its Evaluator
        self._rounds = 0
        self._proxy_port = 80
        self._engine: Any = None
        self.autoscaler = Autoscaler(root, scale) if scale is not None else None
        self.follower = SwarmFollower(root, follow) if follow is not None else None
        self._lengths: dict[str, dict[str, int]] = {}  # app/environment -> queue -> length, this round
        self._autoscaled: list[dict[str, Any]] = []  # this round's autoscale decisions

    @property
    def engine(self) -> Any:
        if self._engine is None:
            from headway.engine.docker import DockerEngine

            self._engine = DockerEngine()
        return self._engine

    def proxy_port(self) -> int:
        try:
            return int(json.loads((self.root / "proxy" / "settings.json").read_text()).get("http_port", 80))
        except (OSError, ValueError):
            return 80

    def round(self, now: float | None = None) -> dict[str, Any]:
        from headway.observe.alerts import Observation

        started = time.monotonic()
        now = time.time() if now is None else now
        self._rounds += 1
        self._autoscaled = []
        self._proxy_port = self.proxy_port()  # read once a round, not once a check
        for _ in range(20):  # the log since the last round, in bounded reads
            lines = self.tail.read()
            self.registry.feed(lines)
            if not self.tail.behind:
                break
        samples: list[tuple[str, dict[str, str], float, float]] = []
        observations: list[Observation] = []
        specs = read_specs(self.root)
        for spec in specs:
            observations += self._environment(spec, now, samples)
            if self.follower is not None:
                self.follower.round(spec)
        host = self.host.sample()
        for key, value in host.items():
            if key.startswith("disk:"):
                path = key.split(":", 1)[1]
                self.registry.set_gauge("headway_host_disk_used_ratio", {"path": path}, value)
                samples.append(("host_disk_used_ratio", {"path": path}, value, now))
                observations.append(Observation("disk", "host", 100.0 * value, {"path": path},
                                                f"{path} is {value:.0%} full"))
            else:
                name = {"cpu": "headway_host_cpu_ratio", "memory": "headway_host_memory_used_ratio",
                        "load1": "headway_host_load1"}[key]
                self.registry.set_gauge(name, {}, value)
                samples.append((name.removeprefix("headway_"), {}, value, now))
                if key in ("cpu", "memory"):
                    observations.append(Observation(key, "host", 100.0 * value, {}, f"host {key} at {value:.0%}"))
        self._apply_requests(specs)
        transitions = self._alerts(specs, observations, now)
        try:
            self.store.add(samples)
            self.store.compact(now)
        except Exception as exc:  # noqa: BLE001 - a full disk must not stop the checks
            print(f"metric store: {exc}", flush=True)
        summary = {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)), "environments": len(specs),
                   "observations": len(observations), "transitions": [t for t in transitions],
                   "firing": self._firing_count(), "autoscale": self._autoscaled,
                   "seconds": round(time.monotonic() - started, 3)}
        atomic_write(self.dir / "last-round.json", json.dumps(summary, indent=2, default=str))
        return summary

    # -- one environment ----------------------------------------------------------------------------------------
    def _environment(self, spec: dict[str, Any], now: float, samples: list[Any]) -> list[Any]:
        from headway.observe.alerts import Observation, restart_count
        from headway.observe.health import http_check

        app, env = spec["app"], spec["environment"]
        subject = f"{app}/{env}"
        out: list[Observation] = []
        current = read_json_object(self.root / "apps" / app / env / "current.json") or {}
        live = current.get("live")
        if current.get("stopped") or live is None:
            return out
        containers = self.engine.containers(L.selector(app=app, environment=env, deploy=live))
        # 1. health through the proxy (what a user sees) and against each live container
        proxy_ok, proxy_reason = True, ""
        for check in spec.get("health", []):
            if spec.get("domains"):
                url = f"http://127.0.0.1:{self._proxy_port}{check['public_path']}"
                host = spec["domains"][0]
            elif spec.get("port"):
                url, host = f"http://127.0.0.1:{spec['port']}{check['public_path']}", check.get("host")
            else:
                continue
            ok, reason = http_check(url, host, float(check.get("timeout", 5)), int(check.get("status", 200)))
            if not ok:
                proxy_ok, proxy_reason = False, reason
        direct_ok, direct_reason = True, ""
        ports = {c["role"]: c for c in spec.get("health", [])}
        running = 0
        by_role: dict[str, list[float | None]] = {}  # role -> CPU (cores) of each running container
        for c in containers:
            role = c.labels.get(L.ROLE, "")
            labels = {"app": app, "environment": env, "release": c.labels.get(L.RELEASE, ""), "role": role,
                      "container": c.name}
            state = c.attrs.get("State") or {}
            restarts = int(c.attrs.get("RestartCount", 0) or 0)
            self.registry.set_gauge("headway_container_restarts_total", labels, restarts)
            seen = self._restarts.setdefault(c.id, (restarts, []))
            if restarts > seen[0]:  # restarted since the last round: once per restart, at this round's time
                seen[1].extend([now] * (restarts - seen[0]))
            self._restarts[c.id] = (restarts, [t for t in seen[1] if now - t <= 3600])
            out.append(Observation("restart_loop", subject, restart_count(self._restarts[c.id][1], now, 600),
                                   {"app": app, "environment": env, "container": c.name},
                                   f"{c.name} restarted {restarts} time(s) in all"))
            if state.get("Running"):
                running += 1
            cpu_ns, mem = _cgroup_usage(c.id)
            ratio: float | None = None
            if cpu_ns is not None:
                last = self._cpu.get(c.id)
                self._cpu[c.id] = (now, cpu_ns)
                if last is not None and now > last[0]:
                    ratio = (cpu_ns - last[1]) / 1e9 / (now - last[0])
                    self.registry.set_gauge("headway_container_cpu_ratio", labels, ratio)
                    samples.append(("container_cpu_ratio", labels, ratio, now))
            if state.get("Running"):
                by_role.setdefault(role, []).append(ratio)
            if mem is not None:
                self.registry.set_gauge("headway_container_memory_bytes", labels, mem)
                samples.append(("container_memory_bytes", labels, float(mem), now))
            check = ports.get(role)
            if check is not None and state.get("Running"):
                address = self.engine.endpoint(c, L.network_name(app, env), int(check.get("port") or 80))
                if address:
                    ok, reason = http_check(f"http://{address}{check['path']}", check.get("host"),
                                            float(check.get("timeout", 5)), int(check.get("status", 200)))
                    if not ok:
                        direct_ok, direct_reason = False, f"{c.name}: {reason}"
            elif check is not None:
                direct_ok, direct_reason = False, f"{c.name} is not running"
        if spec.get("health"):
            if not any(c.labels.get(L.ROLE) in ports for c in containers):
                direct_ok, direct_reason = False, "no container of the live release runs"
            maintenance = bool(current.get("maintenance"))
            for check, ok in (("proxy", proxy_ok), ("direct", direct_ok)):
                self.registry.set_gauge("headway_up", {"app": app, "environment": env, "check": check},
                                        1.0 if ok else 0.0)
                samples.append(("up", {"app": app, "environment": env, "check": check}, 1.0 if ok else 0.0, now))
            down = not proxy_ok or not direct_ok
            reason = proxy_reason or direct_reason
            out.append(Observation("down", subject, down and not maintenance, {"app": app, "environment": env},
                                   reason))
        out += self._data_and_certificate(spec, subject, now)
        out += self._queues(spec, subject)
        if (self._rounds - 1) % DATABASE_EVERY == 0:
            self._databases(spec, now, samples)
        # 2. requests through the proxy, the last 5 minutes of every release and role
        requests = errors = 0
        p95 = 0.0
        for key in list(self.registry.requests.series):
            if key[0] == app and key[1] == env:
                w = self.registry.requests.window(key, seconds=300, now=now)
                requests += w.requests
                errors += w.server_errors
                if w.requests and w.p95 == w.p95:
                    p95 = max(p95, w.p95)
        minute = [self.registry.requests.window(k, seconds=60, now=now) for k in list(self.registry.requests.series)
                  if k[0] == app and k[1] == env]
        m_requests = sum(w.requests for w in minute)
        env_labels = {"app": app, "environment": env}
        samples.append(("http_request_rate", env_labels, m_requests / 60.0, now))
        if m_requests:
            samples.append(("http_server_error_ratio", env_labels, sum(w.server_errors for w in minute) / m_requests,
                            now))
            samples.append(("http_p95_seconds", env_labels, max((w.p95 for w in minute if w.requests and
                                                                 w.p95 == w.p95), default=0.0), now))
        if requests:
            out.append(Observation("error_rate", subject, 100.0 * errors / requests, {"app": app, "environment": env},
                                   f"{errors} of {requests} requests answered 5xx in 5 min"))
            out.append(Observation("p95", subject, p95, {"app": app, "environment": env},
                                   f"p95 {p95 * 1000:.0f} ms over {requests} requests in 5 min"))
        if spec.get("autoscale") and self.autoscaler is not None:
            self._autoscale(spec, now, by_role)
        return out

    def _autoscale(self, spec: dict[str, Any], now: float, by_role: dict[str, list[float | None]]) -> None:
        """This round's signals of each autoscaled role to the autoscaler: running replicas, queue length, average
        CPU (percent of a core, or of the role's cpus limit), p95 over the last minute."""
        from headway.observe.autoscale import Signals

        assert self.autoscaler is not None  # the round calls this only with one
        app, env = spec["app"], spec["environment"]
        auto = spec["autoscale"]
        lengths = self._lengths.get(f"{app}/{env}", {})
        signals: dict[str, Signals] = {}
        for role, rule in (auto.get("roles") or {}).items():
            cpus = [c for c in by_role.get(role, []) if c is not None]
            limit = float((auto.get("limits") or {}).get(role) or 1.0)
            minute = [self.registry.requests.window(k, seconds=60, now=now) for k in list(self.registry.requests.series)
                      if k[0] == app and k[1] == env and k[3] == role]
            with_requests = [w for w in minute if w.requests and w.p95 == w.p95]
            signals[role] = Signals(
                replicas=len(by_role.get(role, [])),
                queue_length=lengths.get(rule["queue"]) if rule.get("queue") else None,
                cpu=100.0 * sum(cpus) / len(cpus) / limit if cpus else None,
                p95=max((w.p95 for w in with_requests), default=None),
                requests=sum(w.requests for w in minute))
        try:
            done = self.autoscaler.round(spec, signals, now)
        except Exception as exc:  # noqa: BLE001 - one environment's autoscaling must not stop the checks
            print(f"{app}/{env}: autoscale: {type(exc).__name__}: {exc}", flush=True)
            done = {"subject": f"{app}/{env}", "error": str(exc)}
        if done is not None:
            self._autoscaled.append(done)

    def _data_and_certificate(self, spec: dict[str, Any], subject: str, now: float) -> list[Any]:
        """Backups (failed, missed, not verified: from the host's catalog) and the certificate's time left."""
        from datetime import datetime

        from headway.data.catalog import Catalog, is_safety
        from headway.observe.alerts import Observation, backup_observation

        app, env = spec["app"], spec["environment"]
        out: list[Observation] = []
        try:
            rules = self._evaluator(subject, spec).rules
        except Exception:  # noqa: BLE001 - said once per round by _alerts
            return out
        if spec.get("databases"):
            catalog = Catalog(self.root, app, env).all()

            def ts(text: str | None) -> float | None:
                return datetime.fromisoformat(text).timestamp() if text else None

            for db in spec["databases"]:
                records = [r for r in catalog if r.database == db["name"] and not is_safety(r)]
                good = [r for r in records if r.status == "good"]
                failed = [r for r in records if r.status == "failed"]
                last_success = ts(good[-1].started_at) if good else None
                if good:
                    self.registry.set_gauge("headway_backup_last_success_timestamp_seconds",
                                            {"app": app, "environment": env, "database": db["name"]},
                                            last_success or 0.0)
                verified = [ts(r.verified_at) for r in good if r.verified_at and r.verify_status == "passed"]
                if not records and not db.get("schedule"):
                    continue  # no backup asked for, none taken: nothing to watch
                out.append(backup_observation(
                    subject, db["name"], rules.backup, now, last_success=last_success,
                    last_failure=(ts(failed[-1].started_at) or now, failed[-1].error or "failed") if failed else None,
                    schedule=db.get("schedule"), watched_since=float(spec.get("written_at", now)),
                    last_verified=max((v for v in verified if v), default=None),
                    first_backup=ts(good[0].started_at) if good else None))
        if spec.get("tls"):
            from headway.proxy.certificates import CertificateStore

            stored = CertificateStore(self.root / "proxy").get(f"{app}--{env}")
            if stored is not None:
                left = stored.meta.days_left() * 86400
                for domain in spec.get("domains", []):
                    self.registry.set_gauge("headway_certificate_expiry_timestamp_seconds", {"domain": domain},
                                            now + left)
                out.append(Observation("certificate", subject, left, {"app": app, "environment": env},
                                       f"the certificate of {', '.join(spec.get('domains', []))} expires in "
                                       f"{left / 86400:.1f} days"))
        return out

    def _databases(self, spec: dict[str, Any], now: float, samples: list[Any]) -> None:
        """Open connections and size of each managed PostgreSQL / MariaDB database, asked with its own client in its
        container (as headway's backups do), as its administrator."""
        from headway.data.credentials import credentials_path
        from headway.data.engines import DIALECTS, Endpoint
        from headway.engine import exec_stream

        app, env = spec["app"], spec["environment"]
        for db in spec.get("databases", []):
            engine = "mariadb" if db.get("engine") == "mysql" else db.get("engine", "")
            if engine not in _DATABASE_SQL or not db.get("managed") or not db.get("database"):
                continue
            container = self.engine.get(db.get("container") or L.accessory_name(app, env, db["name"]))
            creds = read_json_object(credentials_path(self.root, app, env, db["name"]))
            if container is None or creds is None:
                continue
            dialect = DIALECTS[db["engine"]]
            admin = engine == "mariadb"
            ep = Endpoint(host="", port=dialect.port, user="root" if admin else creds["user"],
                          password=creds["root_password" if admin else "password"], database=db["database"])
            try:
                code, out, _ = exec_stream.run(self.engine.client, container.id or "",
                                               dialect.sql_argv(ep, db["database"], _DATABASE_SQL[engine]),
                                               env=dialect.tool_env(ep), timeout=10)
                connections, size = (float(x) for x in out.split()[:2]) if code == 0 else (None, None)
            except (OSError, ValueError):
                connections = size = None
            if connections is None or size is None:
                print(f"{app}/{env}: database {db['name']} did not answer its figures", flush=True)
                continue
            labels = {"app": app, "environment": env, "database": db["name"]}
            self.registry.set_gauge("headway_database_connections", labels, connections)
            self.registry.set_gauge("headway_database_size_bytes", labels, size)
            samples.append(("database_connections", labels, connections, now))
            samples.append(("database_size_bytes", labels, size, now))

    def _queues(self, spec: dict[str, Any], subject: str) -> list[Any]:
        """The length of each queue the rules name (`alerts.queue.queues`), read from the environment's Redis."""
        from headway.data.credentials import credentials_path
        from headway.observe.alerts import Observation

        names = list(((spec.get("alerts") or {}).get("queue") or {}).get("queues") or {})
        scaled = [r["queue"] for r in ((spec.get("autoscale") or {}).get("roles") or {}).values()
                  if r.get("queue") and r["queue"] not in names]  # read for the autoscaler, no alert
        redis = next((d for d in spec.get("databases", []) if d.get("engine") == "redis" and d.get("managed")),
                     None)
        lengths = self._lengths[subject] = {}
        if not (names or scaled) or redis is None:
            return []
        app, env = spec["app"], spec["environment"]
        container = self.engine.get(redis.get("container") or L.accessory_name(app, env, redis["name"]))
        address = self.engine.ip_address(container, L.network_name(app, env)) if container is not None else None
        creds = read_json_object(credentials_path(self.root, app, env, redis["name"])) or {}
        out: list[Observation] = []
        for name in names + scaled:
            try:
                length = redis_length(address or "", 6379, creds.get("password"), name)
            except OSError as exc:
                print(f"{subject}: queue {name}: {exc}", flush=True)
                continue
            lengths[name] = length
            labels = {"app": app, "environment": env, "queue": name}
            self.registry.set_gauge("headway_queue_length", labels, float(length))
            if name in scaled:
                continue
            out.append(Observation("queue", subject, float(length), {"queue": name},
                                   f"{length} job(s) waiting in {name}"))
        return out

    # -- alerts -------------------------------------------------------------------------------------------------
    def _alerts(self, specs: list[dict[str, Any]], observations: list[Any], now: float) -> list[dict[str, Any]]:
        """Each environment's observations through its own rules (host ones through the defaults); every firing,
        repeat and resolved notice to the environment's channels (the host's to every environment's)."""
        by_subject: dict[str, list[Any]] = {}
        for o in observations:
            by_subject.setdefault(o.subject, []).append(o)
        known = {f"{s['app']}/{s['environment']}": s for s in specs}
        out: list[dict[str, Any]] = []
        for subject, obs in by_subject.items():
            spec = known.get(subject)
            try:
                evaluator = self._evaluator(subject, spec)
            except Exception as exc:  # noqa: BLE001 - one environment's bad rules must not stop the others
                print(f"{subject}: its alert rules cannot be used: {getattr(exc, 'message', exc)}", flush=True)
                continue
            for t in evaluator.observe(obs, now):
                channels = spec["channels"] if spec else _all_channels(specs)
                sent = [] if t.silenced else self._notify(t, spec, channels)
                out.append({"kind": t.kind, "rule": t.rule, "subject": t.subject, "text": t.text,
                            "silenced": t.silenced, "sent": sent})
                record_alert(self.root, subject, out[-1], now)
        return out

    def _evaluator(self, subject: str, spec: dict[str, Any] | None) -> Any:
        from headway.observe.alerts import AlertRules, Evaluator, parse_alert_rules

        evaluator = self._evaluators.get(subject)
        if evaluator is None:
            rules = parse_alert_rules(spec.get("alerts"), f"{subject} alerts") if spec else AlertRules()
            evaluator = Evaluator(rules, alert_state_path(self.root, subject), in_maintenance=self._in_maintenance)
            self._evaluators[subject] = evaluator
        return evaluator

    def _apply_requests(self, specs: list[dict[str, Any]]) -> None:
        """Silences asked for by `headway alerts silence|unsilence` (files in agent/requests), applied by the
        agent: the one writer of the alert state."""
        known = {f"{s['app']}/{s['environment']}": s for s in specs}
        for path in sorted((self.dir / "requests").glob("*.json")):
            req = read_json_object(path)
            done: dict[str, Any] = {"request": path.name}
            try:
                if req is None:
                    raise ValueError("unreadable request")
                ev = self._evaluator(req["subject"], known.get(req["subject"]))
                if req["op"] == "silence":
                    sil = ev.silence(req["matcher"], float(req["until"]), req["by"], req.get("reason", ""))
                    done["silence"] = sil.id
                else:
                    ev.unsilence(req["id"])
                    done["unsilenced"] = req["id"]
            except Exception as exc:  # noqa: BLE001 - a bad request is answered, never fatal
                done["error"] = str(getattr(exc, "message", exc))
            atomic_write(self.dir / "requests" / (path.stem + ".done"), json.dumps(done))
            path.unlink(missing_ok=True)

    def _notify(self, t: Any, spec: dict[str, Any] | None, channels: list[dict[str, Any]]) -> list[str]:
        from headway.observe.notify import Notice, parse_channels, send_all

        if not channels:
            return []
        severity = "critical" if t.rule in ("down", "disk", "certificate", "backup") else "warning"
        notice = Notice(kind="resolved" if t.kind == "resolved" else "alert",
                        severity="info" if t.kind == "resolved" else severity,  # type: ignore[arg-type]
                        title=t.text.split(":", 1)[0], text=t.text,
                        app=spec["app"] if spec else "host", environment=spec["environment"] if spec else "-",
                        labels={k: str(v) for k, v in t.labels.items()} | {"rule": t.rule})
        deliveries = send_all(parse_channels(channels, filled=True), notice, lambda text: text)
        for d in deliveries:
            if not d.ok:
                print(f"notice to {d.channel} failed: {d.error}", flush=True)
        return [f"{d.channel}:{'ok' if d.ok else 'failed'}" for d in deliveries]

    def _in_maintenance(self, subject: str) -> bool:
        parts = subject.split("/")
        if len(parts) < 2:
            return False
        current = read_json_object(self.root / "apps" / parts[0] / parts[1] / "current.json") or {}
        return bool(current.get("maintenance"))

    def _firing_count(self) -> int:
        return sum(len(e.firing()) for e in self._evaluators.values())

    # -- forever ------------------------------------------------------------------------------------------------
    def run(self, *, port: int, bind: str, once: bool = False) -> None:
        from headway.observe.metrics import serve

        server = serve(self.registry, bind, port)
        print(f"headway agent: metrics on {server.url}, a round every {self.interval:g}s", flush=True)
        try:
            while True:
                t0 = time.monotonic()
                try:
                    summary = self.round()
                    for t in summary["transitions"]:
                        print(f"alert {t}", flush=True)
                except Exception as exc:  # noqa: BLE001 - one bad round must not stop the agent
                    print(f"round failed: {type(exc).__name__}: {exc}", flush=True)
                if once:
                    return
                time.sleep(max(0.5, self.interval - (time.monotonic() - t0)))  # the agent's own period
        finally:
            server.close()
            for worker in (self.autoscaler, self.follower):
                if worker is not None:
                    worker.close()



ALERT_HISTORY = 500  # notices kept per subject (the dashboard's recent alerts)


def record_alert(root: Path, subject: str, entry: dict[str, Any], now: float) -> None:
    """Append a firing/repeat/resolved notice to the subject's history, cut back to the newest ALERT_HISTORY."""
    path = alert_history_path(root, subject)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({**entry, "at": now}, default=str) + "\n"
    with open(path, "a") as fh:
        fh.write(line)
    if path.stat().st_size > ALERT_HISTORY * 400:
        lines = path.read_text().splitlines(keepends=True)
        if len(lines) > ALERT_HISTORY:
            atomic_write(path, "".join(lines[-ALERT_HISTORY:]))


def request(root: Path, body: dict[str, Any], timeout: float = 0.0) -> dict[str, Any] | None:
    """Leave a request for the agent (a silence); with `timeout`, wait that long for its answer."""
    import uuid

    folder = root / "agent" / "requests"
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{time.time():.3f}-{uuid.uuid4().hex[:6]}"
    atomic_write(folder / f"{name}.json", json.dumps(body))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = read_json_object(folder / f"{name}.done")
        if answer is not None:
            (folder / f"{name}.done").unlink(missing_ok=True)
            return answer
        time.sleep(0.2)  # the agent's next round, polled
    return None


def _all_channels(specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for spec in specs:
        for ch in spec.get("channels", []):
            seen.setdefault(json.dumps(ch, sort_keys=True), ch)
    return list(seen.values())


def redis_length(host: str, port: int, password: str | None, key: str, timeout: float = 3.0) -> int:
    """Jobs waiting in `key`: LLEN of a list, XLEN of a stream, ZCARD of a sorted set (0 when there is no key)."""
    import socket

    def command(sock: socket.socket, *args: str) -> bytes:
        sock.sendall(b"".join([f"*{len(args)}\r\n".encode()] +
                              [f"${len(a.encode())}\r\n".encode() + a.encode() + b"\r\n" for a in args]))
        data = b""
        while not data.endswith(b"\r\n"):
            chunk = sock.recv(4096)
            if not chunk:
                raise OSError("redis closed the connection")
            data += chunk
        if data.startswith(b"-"):
            raise OSError(f"redis: {data[1:].decode(errors='replace').strip()}")
        return data[1:].strip()

    if not host:
        raise OSError("its redis is not running")
    with socket.create_connection((host, port), timeout=timeout) as sock:
        if password:
            command(sock, "AUTH", password)
        kind = command(sock, "TYPE", key).decode()
        verb = {"list": "LLEN", "stream": "XLEN", "zset": "ZCARD", "set": "SCARD"}.get(kind)
        return int(command(sock, verb, key)) if verb else 0
