"""`headway swarm init`: the environment's manager and nodes made one Docker Swarm, over SSH, idempotently.

Each machine must run Docker already (`headway server bootstrap`). The manager initialises the swarm (once); every
node joins it as a worker (once); every member's firewall lets the other members in for the swarm's own ports and
the ports swarm tasks publish (the proxy on the manager reaches the app there), and nobody else. A member of
another swarm is refused, never moved. A second run reports every step `ok`.
"""

from __future__ import annotations

import ipaddress
import json
import shlex
from collections.abc import Callable
from dataclasses import dataclass

from headway.remote.bootstrap import CHANGED, FIREWALL_DIR, FIREWALL_FILE, OK, WOULD_CHANGE, StepResult
from headway.remote.host import Server, ServerError
from headway.remote.ssh import SshAddress, SshSession

MEMBERS_FILE = f"{FIREWALL_DIR}/swarm.nft"
_SWARM_STATE = "docker info --format '{{json .Swarm}}'"


@dataclass
class _Member:
    address: SshAddress
    server: Server
    state: str = ""  # inactive | active | pending | error | locked
    cluster: str = ""
    manager: bool = False
    swarm_address: str = ""  # how the other members reach it


def _require_docker(m: _Member) -> None:
    code, out, err = m.server.run(_SWARM_STATE, timeout=60)
    if code != 0:
        raise ServerError(f"{m.address}: Docker does not answer there ({(err or out).strip()[-200:]})",
                          f"run `headway server bootstrap {m.address}` first")
    try:
        info = json.loads(out)
    except ValueError:
        raise ServerError(f"{m.address}: `docker info` said something unexpected", "check Docker there",
                          details=out[-300:]) from None
    m.state = str(info.get("LocalNodeState") or "")
    m.cluster = str((info.get("Cluster") or {}).get("ID") or "")
    m.manager = bool(info.get("ControlAvailable"))


def _source_address(m: _Member, toward: str) -> str:
    """The address `m` sends from toward the manager: the one the manager sees it by."""
    ipaddress.ip_address(toward)  # what the manager's engine said: an address, nothing for the shell
    script = (f"python3 -c 'import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
              f"s.connect((\"{toward}\", 2377)); print(s.getsockname()[0])'")
    return m.server.sh(script, what="finding the address toward the manager", timeout=30).strip()


def members_ruleset(addresses: list[str]) -> str:
    elements = ", ".join(sorted(set(addresses)))
    return ("# Written by `headway swarm init`: the machines of this host's swarm, let in by firewall.nft.\n"
            f"add element inet headway swarm_members {{ {elements} }}\n")


def swarm_init(manager: SshAddress, nodes: list[SshAddress], *, advertise: str | None = None,
               key_file: str | None = None, accept_host_key: bool = False, check_only: bool = False,
               on_result: Callable[[StepResult], None] | None = None) -> list[StepResult]:
    results: list[StepResult] = []

    def report(name: str, status: str, detail: str = "") -> None:
        results.append(StepResult(name, status, detail))
        if on_result:
            on_result(results[-1])

    sessions = [SshSession(a, key_file=key_file, accept_host_key=accept_host_key) for a in [manager, *nodes]]
    try:
        members = [_Member(s.address, Server(s)) for s in sessions]
        for m in members:
            _require_docker(m)
        head, workers = members[0], members[1:]
        if head.state == "active" and not head.manager:
            raise ServerError(f"{head.address} is a worker of another swarm, not a manager",
                              "name that swarm's manager in `hosts`, or run `docker swarm leave` on it")

        # 1. the manager
        if head.state == "active":
            report(f"swarm manager {head.address}", OK, f"swarm {head.cluster[:12]}")
        elif check_only:
            report(f"swarm manager {head.address}", WOULD_CHANGE, "initialise the swarm")
        else:
            flag = f" --advertise-addr {shlex.quote(advertise)}" if advertise else ""
            code, out, err = head.server.run(f"docker swarm init{flag}", timeout=120)
            if code != 0:
                hint = ("set swarm.advertise in headway.yml to the address the nodes reach the manager at"
                        if "advertise" in err else "see the details")
                raise ServerError(f"{head.address}: the swarm could not be initialised", hint,
                                  details=err.strip()[-400:])
            _require_docker(head)
            report(f"swarm manager {head.address}", CHANGED, f"initialised swarm {head.cluster[:12]}")
        if head.state == "active":
            head.swarm_address = head.server.sh("docker info --format '{{.Swarm.NodeAddr}}'",
                                                what="reading the manager's address", timeout=30).strip()
        else:
            head.swarm_address = advertise or ""

        # 2. who is in it, who will be: the firewall lets them in before anyone joins
        for w in workers:
            if w.state == "active" and w.cluster and head.cluster and w.cluster != head.cluster:
                raise ServerError(f"{w.address} belongs to another swarm ({w.cluster[:12]})",
                                  f"run `docker swarm leave` on {w.address} if it should move to this one")
            w.swarm_address = _source_address(w, head.swarm_address) if head.swarm_address else ""
        addresses = [m.swarm_address for m in members if m.swarm_address]
        if head.state == "active":
            listed = head.server.sh("docker node ls -q | xargs -r docker node inspect --format "
                                    "'{{.Status.Addr}}'", what="listing the swarm's machines", timeout=60)
            addresses += [a for a in listed.split() if a and a != "0.0.0.0"]
        wanted = members_ruleset(addresses) if addresses else ""
        for m in members:
            _firewall(m, wanted, check_only, report)

        # 3. the nodes
        if workers and head.state == "active":
            token = head.server.sh("docker swarm join-token -q worker", what="reading the join token",
                                   timeout=30).strip() if not check_only else ""
            for w in workers:
                if w.state == "active":
                    report(f"swarm node {w.address}", OK, "a member")
                elif check_only:
                    report(f"swarm node {w.address}", WOULD_CHANGE, "join the swarm as a worker")
                else:
                    code, out, err = w.server.run(
                        f"docker swarm join --token {shlex.quote(token)} {shlex.quote(head.swarm_address)}:2377",
                        timeout=120)
                    if code != 0:
                        raise ServerError(f"{w.address}: could not join the swarm at {head.swarm_address}",
                                          "check that it reaches the manager on tcp 2377 (firewall, network)",
                                          details=err.strip()[-400:])
                    report(f"swarm node {w.address}", CHANGED, "joined as a worker")
        elif workers:
            for w in workers:
                report(f"swarm node {w.address}", WOULD_CHANGE, "join the swarm as a worker")
        return results
    finally:
        for s in sessions:
            s.close()


def _firewall(m: _Member, wanted: str, check_only: bool, report: Callable[[str, str, str], None]) -> None:
    name = f"firewall of {m.address}"
    if not m.server.ok(f"command -v nft >/dev/null && [ -f {FIREWALL_FILE} ]"):
        report(name, OK, "no headway firewall here (not bootstrapped by headway): nothing to open")
        return
    if not m.server.ok("nft list set inet headway swarm_members >/dev/null 2>&1"):
        raise ServerError(f"{m.address}: its firewall predates swarm support",
                          f"run `headway server bootstrap {m.address}` again, then this command")
    if m.server.read(MEMBERS_FILE) == wanted:
        report(name, OK, "the swarm's machines are let in")
        return
    if check_only:
        report(name, WOULD_CHANGE, "let the swarm's machines in")
        return
    m.server.write(MEMBERS_FILE, wanted, mode="0600", what="writing the swarm members")
    m.server.sh(f"nft -c -f {FIREWALL_FILE} && nft -f {FIREWALL_FILE}", what="applying the firewall with the "
                "swarm members")
    report(name, CHANGED, "let the swarm's machines in (swarm ports and task ports, from them only)")
