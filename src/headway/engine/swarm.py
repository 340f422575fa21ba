"""Docker Swarm: the app's containers as swarm services across the machines of a swarm, the rest on the manager.

headway runs on the swarm's manager. Each container the release code asks for (one replica of a role of one
deploy) becomes a swarm service of one task, so headway's own plan keeps deciding what starts, what is health-gated
and what gets traffic, while the swarm decides the machine and starts the task again elsewhere when its machine
dies. Swarm's rolling update is never used: a new release is new services, switched to by the proxy.

- An HTTP role's service publishes its port on the machine that runs its task (`mode: host`, a port headway picks
  from PUBLISHED_PORTS): the proxy on the manager and the health gate reach it at <machine address>:<port>, with
  no routing mesh in between.
- Services find each other and the databases by name on the environment's overlay network (`dnsrr`, no virtual
  IPs). Databases, one-off commands (migrations, backups) and the proxy stay containers on the manager (the
  databases and one-offs attached to the same overlay network): a database runs where its volume is.
- Images are pushed to the app's registry before a service uses them, and named by digest, so every machine runs
  the same bytes; the machines pull with the registry credentials sent along with the service.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from headway.config.base import memory_bytes
from headway.engine import labels as L
from headway.engine.base import Container, OneOffResult
from headway.engine.docker import DockerEngine, _errors, _split_reference, log_lines, sdk
from headway.errors import HeadwayError

if TYPE_CHECKING:
    from headway.config.model import Resources

PUBLISHED_PORTS = range(30000, 32768)
IMAGE_LABEL = "dev.headway.image"  # the image reference the release code gave, before it went to the registry
START_TIMEOUT = 180.0  # a task may wait for its machine to pull the image
TASK_LABEL = "com.docker.swarm.service.id"  # on the containers of swarm tasks
FAILED_STATES = {"failed", "rejected", "orphaned"}
RUNNING_STATES = {"running"}


class SwarmError(HeadwayError):
    """The swarm refused or could not do what headway asked."""


@dataclass
class Service:
    """A container handle for one single-task swarm service (what `Engine` calls a container)."""

    id: str
    name: str
    labels: dict[str, str]
    status: str  # running | created | exited
    attrs: dict[str, Any] = field(default_factory=dict)
    task: dict[str, Any] | None = None  # the task that runs (or last ran) it


def is_service(container: Any) -> bool:
    return isinstance(container, Service)


class SwarmEngine(DockerEngine):
    """The `Engine` of an environment on a swarm; call it on the manager."""

    moves_containers = True  # a task whose machine died starts again on another one, at another address

    def __init__(self, *, registry: str, auth: dict[str, str] | None = None,
                 constraints: dict[str, list[str]] | None = None) -> None:
        super().__init__()
        self.registry = registry.rstrip("/")
        self.auth = auth
        self.constraints = constraints or {}
        self._distributed: dict[str, str] = {}
        self._logged_in = False
        self._starting: dict[str, float] = {}  # service id -> when its start is overdue

    # -- the swarm itself -----------------------------------------------------------------------------------
    def require_manager(self) -> None:
        info = self.client.info().get("Swarm") or {}
        if info.get("LocalNodeState") != "active":
            raise SwarmError("this host is not part of a swarm",
                             "run `headway swarm init -e ENV` (it makes the host a manager and joins the nodes)")
        if not info.get("ControlAvailable"):
            raise SwarmError("this host is a swarm worker, not a manager",
                             "name the swarm's manager in the environment's `hosts`")

    def nodes(self) -> list[dict[str, Any]]:
        """id, hostname, address, state (ready/down), availability, role and labels of every machine."""
        out = []
        for n in self.client.api.nodes():
            status = n.get("Status") or {}
            addr = status.get("Addr") or ""
            manager = n.get("ManagerStatus") or {}
            if (not addr or addr == "0.0.0.0") and manager.get("Addr"):
                addr = manager["Addr"].rsplit(":", 1)[0]
            spec = n.get("Spec") or {}
            out.append({"id": n["ID"], "hostname": (n.get("Description") or {}).get("Hostname", ""),
                        "address": addr, "state": status.get("State", ""),
                        "availability": spec.get("Availability", ""), "role": spec.get("Role", ""),
                        "labels": spec.get("Labels") or {}})
        return out

    def machines_down(self) -> list[str]:
        return sorted(n["hostname"] for n in self.nodes() if n["state"] != "ready")

    def _node_addresses(self) -> dict[str, str]:
        return {n["id"]: n["address"] for n in self.nodes()}

    # -- networks -------------------------------------------------------------------------------------------
    def ensure_network(self, name: str, labels: dict[str, str]) -> None:
        """An attachable overlay network: services on any machine and the manager's containers share it."""
        found = self.client.networks.list(names=[name])
        for net in found:
            if net.name == name:
                if net.attrs.get("Driver") != "overlay":
                    raise SwarmError(f"network {name} exists but is not an overlay network (it was made before "
                                     "the environment moved to a swarm)",
                                     "stop the environment (`headway remove -e ENV`), then deploy again")
                return
        self.client.networks.create(name, driver="overlay", attachable=True, labels=labels, check_duplicate=True)

    def fixed_address(self, network: str) -> str | None:
        return None  # overlay networks: the manager's containers keep their names, addresses are not handed out

    # -- images ---------------------------------------------------------------------------------------------
    def distribute(self, image: str) -> str:
        """A reference every machine can pull for `image`: pushed to the registry, named by digest."""
        if image in self._distributed:
            return self._distributed[image]
        repo, tag = _split_reference(image)
        if "@sha256:" in image:
            ref = image
        elif repo.startswith(self.registry + "/"):
            digest = self.push(image, self.auth)
            ref = f"{repo}@{digest.rsplit('@', 1)[-1]}" if "@" in digest else image
        else:
            target = f"{self.registry}/{repo.rsplit('/', 1)[-1]}:{tag or 'latest'}"
            self.tag(image, target)
            pushed = self.push(target, self.auth)
            ref = pushed if "@sha256:" in pushed else target
        self._distributed[image] = ref
        return ref

    def _login(self) -> None:
        if self.auth and not self._logged_in:
            try:
                self.client.login(username=self.auth["username"], password=self.auth["password"],
                                  registry=self.registry, reauth=True)
            except _errors().APIError as exc:
                raise SwarmError(f"the registry {self.registry} refused the credentials",
                                 "check registry.username and the password secret",
                                 details=str(getattr(exc, "explanation", "")) or None) from None
            self._logged_in = True

    # -- services as containers -----------------------------------------------------------------------------
    def _services(self, selector: list[str]) -> list[dict[str, Any]]:
        return list(self.client.api.services(filters={"label": selector}))

    def _tasks(self, service_ids: list[str] | None = None) -> dict[str, list[dict[str, Any]]]:
        filters: dict[str, Any] = {}
        if service_ids is not None and len(service_ids) == 1:
            filters["service"] = service_ids[0]
        by_service: dict[str, list[dict[str, Any]]] = {}
        for t in self.client.api.tasks(filters=filters):
            by_service.setdefault(t.get("ServiceID", ""), []).append(t)
        for tasks in by_service.values():
            tasks.sort(key=lambda t: t.get("UpdatedAt") or t.get("CreatedAt") or "", reverse=True)
        return by_service

    def _handle(self, spec: dict[str, Any], tasks: list[dict[str, Any]]) -> Service:
        s = spec.get("Spec") or {}
        labels = dict(s.get("Labels") or {})
        replicas = int(((s.get("Mode") or {}).get("Replicated") or {}).get("Replicas", 0))
        live = [t for t in tasks if t.get("DesiredState") == "running"]
        running = [t for t in live if (t.get("Status") or {}).get("State") in RUNNING_STATES]
        task = running[0] if running else (live[0] if live else (tasks[0] if tasks else None))
        if replicas and running:
            status = "running"
        elif not tasks and spec.get("UpdatedAt") == spec.get("CreatedAt"):
            status = "created"  # never started
        else:
            status = "exited"
        failed = sum(1 for t in tasks if (t.get("Status") or {}).get("State") in FAILED_STATES)
        attrs = {"Config": {"Image": labels.get(IMAGE_LABEL, "")}, "RestartCount": failed,
                 "Created": spec.get("CreatedAt", "")}
        return Service(spec["ID"], s.get("Name", ""), labels, status, attrs, task)

    def _service(self, container: Service) -> Service:
        """The service as it is now, once a start under way has its task running (or failed)."""
        if container.id in self._starting:
            self.wait_started(container)
        return self._inspect(container)

    def _inspect(self, container: Service) -> Service:
        try:
            spec = self.client.api.inspect_service(container.id)
        except _errors().NotFound:
            return Service(container.id, container.name, container.labels, "removed", container.attrs, None)
        return self._handle(spec, self._tasks([container.id]).get(container.id, []))

    def containers(self, selector: list[str], *, include_stopped: bool = True) -> list[Container]:
        # the containers of tasks on this machine carry their service's labels: the service stands for them
        out: list[Container] = [c for c in super().containers(selector, include_stopped=include_stopped)
                                if TASK_LABEL not in (c.labels or {})]
        services = self._services(selector)
        if services:
            tasks = self._tasks()
            for spec in services:
                handle = self._handle(spec, tasks.get(spec["ID"], []))
                if include_stopped or handle.status == "running":
                    out.append(handle)
        return out

    def summaries(self, selector: list[str]) -> list[dict[str, Any]]:
        out = [c for c in super().summaries(selector) if TASK_LABEL not in c["labels"]]
        services = self._services(selector)
        if services:
            tasks = self._tasks()
            nodes = {n["id"]: n["hostname"] for n in self.nodes()}
            for spec in services:
                h = self._handle(spec, tasks.get(spec["ID"], []))
                where = nodes.get((h.task or {}).get("NodeID", ""), "")
                state = ((h.task or {}).get("Status") or {}).get("State", "")
                out.append({"name": h.name, "labels": h.labels, "state": h.status,
                            "status": f"task {state} on {where}" if where else (state or "no task")})
        return out

    def get(self, name: str) -> Container | None:
        found = [s for s in self.client.api.services(filters={"name": name}) if s["Spec"].get("Name") == name]
        if found:
            return self._handle(found[0], self._tasks([found[0]["ID"]]).get(found[0]["ID"], []))
        return super().get(name)

    def create(self, *, name: str, image: str, command: list[str] | None, env: dict[str, str],
               labels: dict[str, str], network: str | None, aliases: list[str] | None = None,
               resources: Resources | None = None,
               volumes: dict[str, dict[str, str]] | None = None, restart: bool | str = True,
               network_mode: str | None = None, ports: dict[str, int] | None = None,
               fixed_address: bool = False, stop_signal: str | None = None, serve_port: int | None = None,
               health_command: list[str] | None = None, stop_timeout: float | None = None) -> Container:
        """App containers become single-task services; everything else is a container on the manager."""
        if labels.get(L.KIND) != "app":
            return super().create(name=name, image=image, command=command, env=env, labels=labels,
                                  network=network, aliases=aliases, resources=resources, volumes=volumes,
                                  restart=restart, network_mode=network_mode, ports=ports,
                                  fixed_address=False, stop_signal=stop_signal)
        if volumes:
            raise SwarmError(f"{name} mounts files from the manager, which a task on another machine cannot",
                             "use `as: env` secrets for an environment on a swarm")
        types = sdk().types
        pulled = self.distribute(image)
        self._login()
        healthcheck = None
        if health_command:
            healthcheck = types.Healthcheck(test=["CMD", *health_command], interval=2_000_000_000,
                                            timeout=10_000_000_000, retries=3, start_period=1_000_000_000)
        spec = types.ContainerSpec(
            pulled, command=command, env=[f"{k}={v}" for k, v in env.items()], labels=labels,
            stop_signal=stop_signal or "SIGTERM", healthcheck=healthcheck,
            stop_grace_period=int((stop_timeout if stop_timeout is not None else 10) * 1e9))
        limits = None
        if resources is not None and (resources.cpus or resources.memory):
            memory = memory_bytes(resources.memory) if resources.memory else None
            limits = types.Resources(cpu_limit=int(resources.cpus * 1e9) if resources.cpus else None,
                                     mem_limit=memory)
        role = labels.get(L.ROLE, "")
        template = types.TaskTemplate(
            spec, resources=limits, restart_policy=types.RestartPolicy(condition="any", delay=1_000_000_000),
            placement=types.Placement(constraints=self.constraints.get(role) or None),
            log_driver=types.DriverConfig("json-file", {"max-size": "10m", "max-file": "3"}))
        service_labels = {**labels, IMAGE_LABEL: image}
        last: Exception | None = None
        for _ in range(5):  # a port another deploy took between the look and the create: the next one
            endpoint = types.EndpointSpec(mode="dnsrr", ports={self._free_port(): (serve_port, "tcp", "host")}) \
                if serve_port else types.EndpointSpec(mode="dnsrr")
            try:
                created = self.client.api.create_service(
                    template, name=name, labels=service_labels, mode=types.ServiceMode("replicated", replicas=0),
                    networks=[network] if network else None, endpoint_spec=endpoint)
                break
            except _errors().APIError as exc:
                last = exc
                if "port" not in str(exc).lower() or "already" not in str(exc).lower():
                    raise SwarmError(f"the swarm refused service {name}", "see the details",
                                     details=str(getattr(exc, "explanation", exc))) from None
        else:
            raise SwarmError(f"no published port was free for {name}", "free ports 30000-32767 on the swarm",
                             details=str(last))
        return Service(created["ID"], name, service_labels, "created",
                       {"Config": {"Image": image}, "RestartCount": 0, "Created": ""}, None)

    def _free_port(self) -> int:
        taken = set()
        for s in self.client.api.services():
            for p in ((s.get("Spec") or {}).get("EndpointSpec") or {}).get("Ports") or []:
                taken.add(int(p.get("PublishedPort") or 0))
        for port in PUBLISHED_PORTS:
            if port not in taken:
                return port
        raise SwarmError("every port of 30000-32767 is published on the swarm", "remove unused services")

    def _scale(self, service: Service, replicas: int) -> None:
        for _ in range(5):  # another writer moved the version on: read it again
            spec = self.client.api.inspect_service(service.id)
            version = spec["Version"]["Index"]
            mode = sdk().types.ServiceMode("replicated", replicas=replicas)
            try:
                self.client.api.update_service(service.id, version, mode=mode, fetch_current_spec=True)
                return
            except _errors().APIError as exc:
                if "update out of sequence" not in str(exc):
                    raise
        raise SwarmError(f"could not scale {service.name}", "try again")

    def start(self, container: Container) -> None:
        """The task is asked for; it runs once its machine pulled the image, which `wait_started` awaits (and
        every later look at the container first). Several starts in a row pull and start in parallel."""
        if not is_service(container):
            return super().start(container)
        self._scale(container, 1)
        self._starting[container.id] = time.monotonic() + START_TIMEOUT

    def wait_started(self, container: Service) -> None:
        deadline = self._starting.get(container.id)
        if deadline is None:
            return
        try:
            while True:
                handle = self._inspect(container)
                task = handle.task or {}
                status = task.get("Status") or {}
                state = status.get("State", "")
                if handle.status == "running":
                    container.status, container.task = "running", handle.task
                    return
                if state in FAILED_STATES or handle.attrs["RestartCount"] >= 3 or handle.status == "removed":
                    err = status.get("Err", "") or status.get("Message", "")
                    hint = ("push the image or fix the registry credentials" if "No such image" in err
                            or "pull access" in err else "see the details; the old release keeps serving")
                    raise SwarmError(f"{container.name} could not start on the swarm ({state or 'removed'})", hint,
                                     details=err or None)
                if time.monotonic() > deadline:
                    raise SwarmError(f"{container.name} did not start within {START_TIMEOUT:.0f}s "
                                     f"(its task is {state or 'not scheduled'})",
                                     "check `headway swarm nodes -e ENV`: a machine may be down or full")
                time.sleep(0.2)  # the swarm's task state, polled until it runs
        finally:
            self._starting.pop(container.id, None)

    def stop(self, container: Container, timeout: float) -> None:
        """The task is told to stop (its stop signal, then SIGKILL after the service's grace period) and the call
        returns: what headway stops no longer gets traffic, so nothing waits for its last connection to close.
        Stopping several services in a row lets them all drain at once."""
        if not is_service(container):
            return super().stop(container, timeout)
        self._starting.pop(container.id, None)
        try:
            self._scale(container, 0)
        except _errors().NotFound:
            return
        container.status = "exited"

    def remove(self, container: Container, *, volumes: bool = False) -> None:
        if not is_service(container):
            return super().remove(container, volumes=volumes)
        self._starting.pop(container.id, None)
        try:
            self.client.api.remove_service(container.id)
        except _errors().NotFound:
            pass

    def state(self, container: Container) -> dict[str, Any]:
        if not is_service(container):
            return super().state(container)
        handle = self._service(container)
        container.status, container.task, container.attrs = handle.status, handle.task, handle.attrs
        status = (handle.task or {}).get("Status") or {}
        code = (status.get("ContainerStatus") or {}).get("ExitCode")
        return {"Running": handle.status == "running", "Status": handle.status, "ExitCode": code,
                "Restarting": False, "Error": status.get("Err", "")}

    def last_exit_code(self, container: Container) -> int | None:
        if not is_service(container):
            return super().last_exit_code(container)
        for t in self._tasks([container.id]).get(container.id, []):
            code = ((t.get("Status") or {}).get("ContainerStatus") or {}).get("ExitCode")
            if code is not None and (t.get("Status") or {}).get("State") != "running":
                return int(code)
        return None

    def ip_address(self, container: Container, network: str | None = None) -> str | None:
        if not is_service(container):
            return super().ip_address(container, network)
        task = self._service(container).task or {}
        for att in task.get("NetworksAttachments") or []:
            if network is None or (att.get("Network") or {}).get("Spec", {}).get("Name") == network:
                for addr in att.get("Addresses") or []:
                    return str(addr).split("/")[0]
        return None

    def endpoint(self, container: Container, network: str | None, port: int) -> str | None:
        """<machine address>:<published port> of the running task of an HTTP role's service."""
        if not is_service(container):
            return super().endpoint(container, network, port)
        handle = self._service(container)
        task = handle.task or {}
        if handle.status != "running":
            return None
        for p in ((task.get("Status") or {}).get("PortStatus") or {}).get("Ports") or []:
            if int(p.get("TargetPort", 0)) == port and p.get("PublishedPort"):
                address = self._node_addresses().get(task.get("NodeID", ""))
                return f"{address}:{p['PublishedPort']}" if address else None
        return None

    def node_of(self, container: Container) -> str | None:
        """The hostname of the machine that runs the container's task (the manager's for a container)."""
        if not is_service(container):
            return str(self.client.info().get("Name", "")) or None
        task = self._service(container).task or {}
        return next((n["hostname"] for n in self.nodes() if n["id"] == task.get("NodeID")), None)

    def _local_container(self, container: Service) -> Any | None:
        """The container of the service's task when it runs on this machine (the manager)."""
        task = self._service(container).task or {}
        cid = ((task.get("Status") or {}).get("ContainerStatus") or {}).get("ContainerID")
        if not cid:
            return None
        try:
            return self.client.containers.get(cid)
        except _errors().NotFound:
            return None

    def exec(self, container: Container, argv: list[str], *, timeout: float | None = None) -> OneOffResult:
        if not is_service(container):
            return super().exec(container, argv, timeout=timeout)
        local = self._local_container(container)
        if local is not None:
            return super().exec(local, argv, timeout=timeout)
        handle = self._service(container)
        if handle.status == "running" and handle.task is not None and self._has_healthcheck(container, argv):
            # the swarm reports a task with a health check as running once that same command passed on its machine
            return OneOffResult(exit_code=0, output="healthy on its machine (the swarm's health check)")
        where = self.node_of(container) or "another machine"
        return OneOffResult(exit_code=126, output=f"{container.name} runs on {where}; commands run in the tasks "
                                                  "on the manager only (use `headway run` for a one-off)")

    def _has_healthcheck(self, container: Service, argv: list[str]) -> bool:
        spec = self.client.api.inspect_service(container.id)["Spec"]
        test = ((spec.get("TaskTemplate") or {}).get("ContainerSpec") or {}).get("Healthcheck", {}).get("Test")
        return bool(test) and list(test[1:]) == list(argv)

    def signal_main_process(self, container: Container, argv: list[str]) -> OneOffResult:
        return self.exec(container, argv, timeout=30)

    def logs(self, container: Container, *, tail: int | str = "all", since: float | None = None,
             follow: bool = False) -> Iterator[str]:
        if not is_service(container):
            yield from super().logs(container, tail=tail, since=since, follow=follow)
            return
        kwargs: dict[str, Any] = {"stdout": True, "stderr": True, "follow": follow, "tail": tail}
        if since is not None:
            kwargs["since"] = int(since)
        yield from log_lines(self.client.api.service_logs(container.id, **kwargs))

    def last_lines(self, container: Container, n: int = 20) -> str:
        if not is_service(container):
            return super().last_lines(container, n)
        try:
            lines = list(self.logs(container, tail=n))
        except _errors().DockerException:
            return ""
        task = self._service(container).task or {}
        err = (task.get("Status") or {}).get("Err", "")
        return "\n".join(lines + ([f"(swarm: {err})"] if err else []))

    def user_ids(self, container: Container) -> tuple[int, int] | None:
        if not is_service(container):
            return super().user_ids(container)
        local = self._local_container(container)
        return super().user_ids(local) if local is not None else None
