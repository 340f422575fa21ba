"""`headway server status`: what a server has — Docker, disk, memory, load, listening ports, pending updates, headway.

One script runs there with the server's python3 (every Debian and Ubuntu server headway prepares has it) and
prints one JSON document; nothing on the server is changed.
"""

from __future__ import annotations

import json
from typing import Any

from headway.remote.host import Server, ServerError
from headway.remote.ssh import SshAddress, SshSession

COLLECT = r'''
import json, os, re, shutil, subprocess

def run(*argv, timeout=30):
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        return p.returncode, p.stdout, p.stderr
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 127, "", str(exc)

out = {}
code, text, err = run("docker", "info", "--format", "{{json .}}")
if code == 0:
    info = json.loads(text)
    out["docker"] = {"installed": True, "running": True, "version": info.get("ServerVersion"),
                     "containers_running": info.get("ContainersRunning"), "containers": info.get("Containers"),
                     "images": info.get("Images"), "root_dir": info.get("DockerRootDir")}
else:
    installed = shutil.which("dockerd") is not None
    out["docker"] = {"installed": installed, "running": False, "version": None,
                     "error": (err or text).strip().splitlines()[-1:] or None}

disks = []
seen = set()
root_dir = (out["docker"].get("root_dir") or "/var/lib/docker")
for path in ["/", root_dir]:
    if not os.path.exists(path):
        continue
    st = os.statvfs(path)
    dev = os.stat(path).st_dev
    total, free = st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize
    used = total - st.f_bfree * st.f_frsize
    disks.append({"path": path, "total_bytes": total, "used_bytes": used, "free_bytes": free,
                  "used_percent": round(100 * used / total, 1) if total else None,
                  "same_filesystem_as": next((d for d, v in seen if v == dev), None)})
    seen.add((path, dev))
out["disks"] = disks

mem = {}
with open("/proc/meminfo") as fh:
    for line in fh:
        k, v = line.split(":", 1)
        mem[k] = int(v.split()[0]) * 1024
out["memory"] = {"total_bytes": mem.get("MemTotal"), "available_bytes": mem.get("MemAvailable"),
                 "swap_total_bytes": mem.get("SwapTotal"), "swap_free_bytes": mem.get("SwapFree")}
with open("/proc/loadavg") as fh:
    parts = fh.read().split()
out["load"] = {"1m": float(parts[0]), "5m": float(parts[1]), "15m": float(parts[2]), "cpus": os.cpu_count()}

inodes = {}
for pid in os.listdir("/proc"):
    if not pid.isdigit():
        continue
    try:
        with open(f"/proc/{pid}/comm") as fh:
            comm = fh.read().strip()
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.setdefault(link[8:-1], (int(pid), comm))
    except OSError:
        continue

def hexaddr(text, v6):
    raw = bytes.fromhex(text)
    if not v6:
        return ".".join(str(b) for b in raw[::-1])
    words = [raw[i:i + 4][::-1].hex() for i in range(0, 16, 4)]
    full = "".join(words)
    import ipaddress
    return str(ipaddress.IPv6Address(bytes.fromhex(full)))

ports = []
for proto, path, v6 in [("tcp", "/proc/net/tcp", False), ("tcp", "/proc/net/tcp6", True),
                        ("udp", "/proc/net/udp", False), ("udp", "/proc/net/udp6", True)]:
    try:
        with open(path) as fh:
            next(fh)
            for line in fh:
                f = line.split()
                addr, port = f[1].split(":")
                state, inode = f[3], f[9]
                if proto == "tcp" and state != "0A":  # LISTEN
                    continue
                if proto == "udp" and (state != "07" or f[2].split(":")[1] != "0000"):
                    continue
                pid, comm = inodes.get(inode, (None, None))
                ports.append({"proto": proto, "address": hexaddr(addr, v6), "port": int(port, 16),
                              "pid": pid, "process": comm})
    except OSError:
        continue
ports.sort(key=lambda p: (p["proto"], p["port"], p["address"]))
out["listening"] = ports

code, text, err = run("apt", "list", "--upgradable", timeout=60)
if code == 0:
    lines = [l for l in text.splitlines() if "/" in l and "[upgradable" in l]
    security = [l for l in lines if "-security" in l.split()[0]]
    lists = [os.path.getmtime(os.path.join("/var/lib/apt/lists", n)) for n in os.listdir("/var/lib/apt/lists")
             if "_Packages" in n] if os.path.isdir("/var/lib/apt/lists") else []
    import time
    out["updates"] = {"pending": len(lines), "security": len(security),
                      "packages": [l.split("/")[0] for l in lines][:50],
                      "lists_age_hours": round((time.time() - max(lists)) / 3600, 1) if lists else None}
else:
    out["updates"] = None

code, text, err = run("/usr/local/bin/headway", "--version")
out["headway"] = text.strip().removeprefix("headway, version ") if code == 0 else None
with open("/etc/os-release") as fh:
    osr = dict(l.rstrip("\n").split("=", 1) for l in fh if "=" in l)
out["os"] = osr.get("PRETTY_NAME", "").strip('"')
out["hostname"] = os.uname().nodename
with open("/proc/uptime") as fh:
    out["uptime_seconds"] = int(float(fh.read().split()[0]))
print(json.dumps(out))
'''


def server_status(address: SshAddress, *, key_file: str | None = None, accept_host_key: bool = False
                  ) -> dict[str, Any]:
    with SshSession(address, key_file=key_file, accept_host_key=accept_host_key) as session:
        server = Server(session)
        server.facts()
        if not server.ok("command -v python3 >/dev/null"):
            raise ServerError(f"{address}: python3 is missing there", f"run `headway server bootstrap {address}` "
                              "first (it installs headway and its Python)")
        out = server.sh("python3 -", what="reading the server's status", stdin=COLLECT.encode(), timeout=120)
    try:
        report: dict[str, Any] = json.loads(out)
    except ValueError:
        raise ServerError(f"{address}: the status report was not readable", "run the command again") from None
    report["address"] = str(address)
    return report
