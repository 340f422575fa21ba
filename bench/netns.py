"""A network namespace with added round-trip latency, for load generated from "far away" on the same host.

    with LatencyNamespace(delay_ms=25) as ns:
        argv = [*ns.exec_prefix(), sys.executable, "-m", "bench.netload", f"http://{ns.host_ip}:{port}/"]

The namespace `hwbench-<id>` is joined to the host by a veth pair: the host end is 10.203.0.1/24, the end inside
the namespace 10.203.0.2/24. Every packet leaving the namespace through the veth is held for `delay_ms`, which adds
that much to every round trip, as `tc qdisc add dev <veth> root netem delay 25ms` does. On a kernel without
sch_netem the same delay is applied in user space by bench/netdelay.py through an NFQUEUE rule in the namespace's
own iptables (the host's firewall is not touched). Nothing else is routed: only loopback and this namespace.
"""

from __future__ import annotations

import json
import select
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Self

REPO = Path(__file__).resolve().parent.parent
SUBNET, HOST_IP, NS_IP = "10.203.0.0/24", "10.203.0.1", "10.203.0.2"
QUEUE = 7203  # NFQUEUE number, only used inside the namespace

PROBE = """
import json, socket, sys, time
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
times = []
for _ in range(n):
    s = socket.socket()
    s.settimeout(5)
    t0 = time.perf_counter()
    s.connect((host, port))
    times.append((time.perf_counter() - t0) * 1000)
    s.close()
print(json.dumps(times))
"""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(["ip", *args], check=False, text=True, capture_output=True, timeout=30)
    if check and r.returncode != 0:
        raise RuntimeError(f"`ip {' '.join(args)}` exited {r.returncode}: {r.stderr.strip()}")
    return r


class LatencyNamespace:
    def __init__(self, delay_ms: float = 25.0) -> None:
        suffix = uuid.uuid4().hex[:6]
        self.delay_ms = delay_ms
        self.name = f"hwbench-{suffix}"
        self.host_if, self.ns_if = f"hwb{suffix}h", f"hwb{suffix}n"
        self.host_ip, self.ns_ip = HOST_IP, NS_IP
        self.method = ""
        self.rtt_ms: dict[str, float] = {}
        self._delay_proc: subprocess.Popen[str] | None = None
        self._created = False

    def exec_prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.name]

    def __enter__(self) -> Self:
        try:
            self.create()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def create(self) -> None:
        taken = _ip("-4", "route", "show", "to", "match", HOST_IP).stdout
        if any(not line.startswith("default") for line in taken.splitlines() if line.strip()):
            raise RuntimeError(f"{SUBNET} is already routed on this host ({taken.strip()}); remove it first")
        _ip("netns", "add", self.name)
        self._created = True
        _ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if, "netns", self.name)
        _ip("addr", "add", f"{HOST_IP}/24", "dev", self.host_if)
        _ip("link", "set", self.host_if, "up")
        inside = ["netns", "exec", self.name, "ip"]
        _ip(*inside, "addr", "add", f"{NS_IP}/24", "dev", self.ns_if)
        _ip(*inside, "link", "set", self.ns_if, "up")
        _ip(*inside, "link", "set", "lo", "up")
        netem = subprocess.run([*self.exec_prefix(), "tc", "qdisc", "add", "dev", self.ns_if, "root", "netem",
                                "delay", f"{self.delay_ms:g}ms"], check=False, text=True, capture_output=True,
                               timeout=30)
        if netem.returncode == 0:
            self.method = f"tc netem delay {self.delay_ms:g}ms on the namespace's veth"
        else:
            self._start_user_space_delay(netem.stderr.strip())
        self.rtt_ms = self.measure_rtt()
        if self.rtt_ms["min"] < self.delay_ms * 0.9:
            raise RuntimeError(f"the namespace's round trip is {self.rtt_ms['min']:.1f} ms, expected at least "
                               f"{self.delay_ms:g} ms ({self.method})")

    def _start_user_space_delay(self, netem_error: str) -> None:
        self._delay_proc = subprocess.Popen(
            [*self.exec_prefix(), sys.executable, "-m", "bench.netdelay", "--queue", str(QUEUE), "--delay-ms",
             f"{self.delay_ms:g}", "--max-seconds", "3600"], cwd=REPO, text=True, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE)
        assert self._delay_proc.stdout is not None
        ready, _, _ = select.select([self._delay_proc.stdout], [], [], 30)
        line = self._delay_proc.stdout.readline().strip() if ready else ""
        if line != "ready":
            self._delay_proc.kill()
            err = self._delay_proc.communicate(timeout=10)[1]
            raise RuntimeError(f"bench.netdelay did not start: {line or 'no answer in 30 s'} {err.strip()[-500:]}")
        rule = subprocess.run([*self.exec_prefix(), "iptables", "-A", "OUTPUT", "-o", self.ns_if, "-j", "NFQUEUE",
                               "--queue-num", str(QUEUE)], check=False, text=True, capture_output=True, timeout=30)
        if rule.returncode != 0:
            raise RuntimeError(f"iptables NFQUEUE rule in {self.name}: {rule.stderr.strip()}")
        self.method = (f"{self.delay_ms:g} ms hold in user space (bench/netdelay.py, NFQUEUE on the namespace's "
                       f"veth egress), because `tc qdisc add ... netem` failed here: "
                       f"{(netem_error or 'unknown error').rstrip('.')}")

    def measure_rtt(self, samples: int = 15) -> dict[str, float]:
        """TCP connect times (one round trip each) from inside the namespace to a listener on the host end."""
        with socket.socket() as listener:
            listener.bind((HOST_IP, 0))
            listener.listen(64)
            port = listener.getsockname()[1]
            r = subprocess.run([*self.exec_prefix(), sys.executable, "-c", PROBE, HOST_IP, str(port), str(samples)],
                               check=False, text=True, capture_output=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"round-trip probe in {self.name} failed: {r.stderr.strip()[-500:]}")
        times = json.loads(r.stdout)
        return {"min": round(min(times), 2), "median": round(statistics.median(times), 2),
                "max": round(max(times), 2), "samples": len(times)}

    def describe(self) -> dict[str, Any]:
        return {"namespace": self.name, "host_end": f"{self.host_if} {HOST_IP}/24",
                "namespace_end": f"{self.ns_if} {NS_IP}/24", "delay_ms": self.delay_ms, "method": self.method,
                "tcp_connect_rtt_ms": self.rtt_ms}

    def close(self) -> list[str]:
        problems: list[str] = []
        if self._delay_proc is not None and self._delay_proc.poll() is None:
            self._delay_proc.kill()
            try:
                self._delay_proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                problems.append(f"bench.netdelay (pid {self._delay_proc.pid}) did not exit")
        self._delay_proc = None
        if self._created:
            r = _ip("netns", "del", self.name, check=False)
            if r.returncode != 0:
                problems.append(f"ip netns del {self.name}: {r.stderr.strip()}")
            self._created = False
        # the veth pair goes with the namespace; make sure the host end is gone
        deadline = time.monotonic() + 10
        while _ip("link", "show", self.host_if, check=False).returncode == 0:
            if time.monotonic() > deadline:
                r = _ip("link", "del", self.host_if, check=False)
                if r.returncode != 0:
                    problems.append(f"ip link del {self.host_if}: {r.stderr.strip()}")
                break
            time.sleep(0.1)  # polling: the kernel removes the peer asynchronously
        return problems


if __name__ == "__main__":
    with LatencyNamespace() as _ns:
        print(json.dumps(_ns.describe(), indent=2))
