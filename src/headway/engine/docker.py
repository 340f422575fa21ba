"""The Docker Engine, through the docker SDK: every call headway makes to the engine goes through here.

The SDK (and requests under it) is imported on first use, not when headway starts: `headway status` lists
containers with one engine call over the local socket and never loads it.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import ipaddress
import json
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    import docker

from headway import faults
from headway.config.model import Resources
from headway.errors import BuildFailed, DockerUnavailable, HeadwayError

from headway.engine.base import Container, LineSink, OneOffResult

__all__ = ["Container", "DockerEngine", "LineSink", "OneOffResult", "sdk"]


@functools.cache
def sdk() -> ModuleType:
    """The docker SDK, imported once, when first needed."""
    import docker
    import docker.errors
    import docker.types

    return docker


def _errors() -> Any:
    return sdk().errors
FIXED_ADDRESSES = "dev.headway.fixed-addresses"  # on networks whose upper half headway hands out
NETWORK_LABEL = "dev.headway.network"  # on containers with a fixed address: the network and the address
ADDRESS_LABEL = "dev.headway.address"


class DockerEngine:
    """A thin, typed layer over the docker SDK with headway's labels and error messages."""

    def __init__(self, client: docker.DockerClient | None = None) -> None:
        self._client = client
        host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        self._socket = host[len("unix://"):] if host.startswith("unix://") and client is None else None
        if self._socket is None:
            _ = self.client  # not a local socket: connect (and fail) now
        elif not os.path.exists(self._socket):
            raise self._unavailable(f"{self._socket}: no such socket")

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            try:
                client = sdk().from_env(timeout=120)
                client.ping()
            except _errors().DockerException as exc:
                raise self._unavailable(str(exc)) from None
            self._client = client
        return self._client

    @staticmethod
    def _unavailable(details: str) -> DockerUnavailable:
        return DockerUnavailable("cannot reach the Docker daemon (is it running?)",
                                 "start it (`systemctl start docker`, or `dockerd &` on hosts without systemd) "
                                 "or set DOCKER_HOST", details=details)

    def _local_get(self, path: str) -> Any:
        """GET on the engine's local socket, for the read-only calls of fast commands."""
        assert self._socket is not None
        conn = http.client.HTTPConnection("localhost", timeout=30)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(30)
            sock.connect(self._socket)
        except OSError as exc:
            sock.close()
            raise self._unavailable(str(exc)) from None
        conn.sock = sock
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read()
        finally:
            conn.close()
        if resp.status != 200:
            raise HeadwayError(f"Docker refused: {resp.status} {body[:200]!r}", "see the message")
        return json.loads(body)

    # -- networks and volumes ---------------------------------------------------------------------------
    def ensure_network(self, name: str, labels: dict[str, str]) -> None:
        """A bridge network whose subnet is fixed at creation: the engine hands out addresses dynamically only
        from its lower half, and headway gives web containers fixed addresses from the upper half, so they keep
        them across daemon restarts (the proxy routes to addresses)."""
        if self.client.networks.list(names=[name]):
            return
        probe = self.client.networks.create(name, driver="bridge", labels=labels, check_duplicate=True)
        probe.reload()
        config = ((probe.attrs.get("IPAM") or {}).get("Config") or [{}])[0]
        subnet = config.get("Subnet")
        if not subnet or ipaddress.ip_network(subnet).version != 4 or ipaddress.ip_network(subnet).prefixlen > 28:
            return  # keep what the engine chose: dynamic addresses only
        net = ipaddress.ip_network(subnet)
        lower = next(net.subnets(prefixlen_diff=1))
        probe.remove()
        pool = sdk().types.IPAMPool(subnet=str(net), iprange=str(lower), gateway=config.get("Gateway"))
        self.client.networks.create(name, driver="bridge", labels={**labels, FIXED_ADDRESSES: "upper-half"},
                                    check_duplicate=True, ipam=sdk().types.IPAMConfig(pool_configs=[pool]))

    def fixed_address(self, network: str) -> str | None:
        """A free address for a new container on `network` that it keeps for good; None when the network
        has no fixed subnet (created before headway fixed them)."""
        nets = self.client.networks.list(names=[network])
        if not nets or (nets[0].attrs.get("Labels") or {}).get(FIXED_ADDRESSES) != "upper-half":
            return None
        nets[0].reload()
        config = ((nets[0].attrs.get("IPAM") or {}).get("Config") or [{}])[0]
        net = ipaddress.IPv4Network(config["Subnet"])
        upper = list(net.subnets(prefixlen_diff=1))[1]
        taken: set[str] = set()
        for c in self.client.api.containers(all=True, filters={"network": network}):
            endpoint = ((c.get("NetworkSettings") or {}).get("Networks") or {}).get(network) or {}
            taken.add(endpoint.get("IPAddress") or "")
            taken.add(((endpoint.get("IPAMConfig") or {}).get("IPv4Address")) or "")
        # containers that are stopped keep their fixed address in their config: read it there too
        for c in self.client.api.containers(all=True, filters={"label": [f"{NETWORK_LABEL}={network}"]}):
            taken.add((c.get("Labels") or {}).get(ADDRESS_LABEL, ""))
        for host in upper.hosts():
            if str(host) not in taken:
                return str(host)
        return None

    def remove_network(self, name: str) -> None:
        for net in self.client.networks.list(names=[name]):
            try:
                net.remove()
            except _errors().NotFound:
                pass

    def ensure_volume(self, name: str, labels: dict[str, str]) -> None:
        try:
            self.client.volumes.get(name)
        except _errors().NotFound:
            self.client.volumes.create(name, labels=labels)

    def volumes(self, selector: list[str]) -> list[Any]:
        return list(self.client.volumes.list(filters={"label": selector}))

    # -- images -------------------------------------------------------------------------------------------
    def build(self, *, context: Path, dockerfile: str, tag: str, args: dict[str, str], target: str | None,
              labels: dict[str, str], on_line: LineSink | None = None) -> str:
        """Build an image; on failure raise BuildFailed with the build's last lines."""
        try:
            return self._build_once(context=context, dockerfile=dockerfile, tag=tag, args=args, target=target,
                                    labels=labels, on_line=on_line)
        except BuildFailed as exc:
            # a cached layer removed while this build used it (an image prune elsewhere): build again once
            if "unknown parent image" not in exc.message:
                raise
            return self._build_once(context=context, dockerfile=dockerfile, tag=tag, args=args, target=target,
                                    labels=labels, on_line=on_line, nocache=True)

    def _build_once(self, *, context: Path, dockerfile: str, tag: str, args: dict[str, str], target: str | None,
                    labels: dict[str, str], on_line: LineSink | None, nocache: bool = False) -> str:
        tail: deque[str] = deque(maxlen=25)
        if not context.is_dir():
            raise BuildFailed(f"build context {context} is not a directory", "fix image.context in headway.yml")
        if not (context / dockerfile).is_file():
            raise BuildFailed(f"no Dockerfile at {context / dockerfile}", "fix image.dockerfile in headway.yml")
        try:
            stream = self.client.api.build(path=str(context), dockerfile=dockerfile, tag=tag, buildargs=args,
                                           target=target, labels=labels, rm=True, forcerm=True, decode=True,
                                           nocache=nocache)
            image_id = None
            for chunk in stream:
                if "stream" in chunk:
                    for line in chunk["stream"].splitlines():
                        if line.strip():
                            tail.append(line)
                            if on_line:
                                on_line(line)
                if "aux" in chunk and "ID" in chunk["aux"]:
                    image_id = chunk["aux"]["ID"]
                if "error" in chunk:
                    tail.append(chunk["error"].strip())
                    raise BuildFailed("image build failed: " + chunk["error"].strip().splitlines()[-1],
                                      "fix the Dockerfile or build context; the build output is above",
                                      details="\n".join(tail))
        except _errors().APIError as exc:
            raise BuildFailed(f"image build failed: {exc.explanation or exc}",
                              "fix the Dockerfile or build context", details="\n".join(tail)) from None
        return image_id or self.client.images.get(tag).id

    def image_exists(self, ref: str) -> bool:
        try:
            self.client.images.get(ref)
            return True
        except _errors().ImageNotFound:
            return False

    def image_id(self, ref: str) -> str:
        return str(self.client.images.get(ref).id or "")

    def remove_volume(self, name: str) -> None:
        with contextlib.suppress(_errors().NotFound, _errors().APIError):
            self.client.volumes.get(name).remove(force=True)

    def remove_image(self, ref: str) -> None:
        try:
            self.client.images.remove(ref, noprune=False)
        except (_errors().ImageNotFound, _errors().APIError):
            pass  # still used by a container, or already gone

    def pull(self, ref: str, auth: dict[str, str] | None = None) -> str:
        """Pull `ref` (repo:tag or repo@digest) and return it by digest (repo@sha256:...)."""
        repo, tag = _split_reference(ref)
        try:
            for chunk in self.client.api.pull(repo, tag=tag, auth_config=auth, stream=True, decode=True):
                if "error" in chunk:
                    raise _registry_error("pull", ref, str(chunk["error"]))
        except _errors().APIError as exc:
            raise _registry_error("pull", ref, str(exc.explanation or exc)) from None
        except _errors().DockerException as exc:
            raise _registry_error("pull", ref, str(exc)) from None
        return self.digest_of(ref) or ref

    def digest_of(self, ref: str) -> str | None:
        """repo@sha256:... of a local image that came from (or went to) a registry; None for a local build."""
        try:
            image = self.client.images.get(ref)
        except _errors().ImageNotFound:
            return None
        repo, _ = _split_reference(ref)
        digests = image.attrs.get("RepoDigests") or []
        return next((d for d in digests if d.split("@", 1)[0] == repo), digests[0] if digests else None)

    def tag(self, ref: str, new: str) -> None:
        repo, tag = _split_reference(new)
        self.client.images.get(ref).tag(repo, tag=tag)

    def push(self, ref: str, auth: dict[str, str] | None = None) -> str:
        """Push repo:tag to its registry; returns repo@sha256:... as the registry stores it."""
        repo, tag = _split_reference(ref)
        digest = None
        try:
            for chunk in self.client.api.push(repo, tag=tag, auth_config=auth, stream=True, decode=True):
                if "error" in chunk:
                    raise _registry_error("push", ref, str(chunk["error"]))
                aux = chunk.get("aux") or {}
                if "Digest" in aux:
                    digest = aux["Digest"]
        except _errors().APIError as exc:
            raise _registry_error("push", ref, str(exc.explanation or exc)) from None
        return f"{repo}@{digest}" if digest else (self.digest_of(ref) or ref)

    def require_image(self, ref: str, what: str) -> None:
        """Make sure an image is present, pulling it when it is not."""
        if self.image_exists(ref):
            return
        try:
            self.client.images.pull(ref)
        except _errors().DockerException as exc:
            raise HeadwayError(f"{what}: image {ref} is not on this host and could not be pulled",
                               f"check the image name, or build/pull it first (`docker pull {ref}`)",
                               details=str(exc)) from None

    # -- containers ---------------------------------------------------------------------------------------
    def containers(self, selector: list[str], *, include_stopped: bool = True) -> list[Container]:
        return list(self.client.containers.list(all=include_stopped, filters={"label": selector}))

    def summaries(self, selector: list[str]) -> list[dict[str, Any]]:
        """One engine call for many containers: name, labels, state ("running", "exited") and status text
        ("Up 5 minutes"), without inspecting each."""
        out = []
        if self._socket is not None and self._client is None:
            query = quote(json.dumps({"label": selector}), safe="")
            found = self._local_get(f"/containers/json?all=1&filters={query}")
        else:
            found = self.client.api.containers(all=True, filters={"label": selector})
        for c in found:
            names = c.get("Names") or [""]
            out.append({"name": names[0].lstrip("/"), "labels": c.get("Labels") or {}, "state": c.get("State", ""),
                        "status": c.get("Status", "")})
        return out

    def get(self, name: str) -> Container | None:
        try:
            return self.client.containers.get(name)
        except _errors().NotFound:
            return None

    def create(self, *, name: str, image: str, command: list[str] | None, env: dict[str, str],
               labels: dict[str, str], network: str | None, aliases: list[str] | None = None,
               resources: Resources | None = None,
               volumes: dict[str, dict[str, str]] | None = None, restart: bool | str = True,
               network_mode: str | None = None, ports: dict[str, int] | None = None,
               fixed_address: bool = False, stop_signal: str | None = None, serve_port: int | None = None,
               health_command: list[str] | None = None, stop_timeout: float | None = None) -> Container:
        """`stop_signal` is what `stop` sends first (the engine's StopSignal), SIGKILL following after its
        timeout. `serve_port` and `health_command` need nothing here: this host reaches the container's address
        and runs the health command in it."""
        kwargs: dict[str, Any] = {}
        labels = dict(labels)
        if resources is not None:
            if resources.cpus:
                kwargs["nano_cpus"] = int(resources.cpus * 1e9)
            if resources.memory:
                kwargs["mem_limit"] = resources.memory
        if network_mode:
            kwargs["network_mode"] = network_mode
        elif network:
            kwargs["network"] = network
            address = self.fixed_address(network) if fixed_address else None
            if address:
                labels.update({NETWORK_LABEL: network, ADDRESS_LABEL: address})
            if aliases or address:
                kwargs["networking_config"] = {network: self.client.api.create_endpoint_config(
                    aliases=aliases or None, ipv4_address=address)}
        container = self.client.containers.create(
            image, command=command, name=name, environment=env, labels=labels, detach=True,
            stop_signal=stop_signal or "SIGTERM", volumes=volumes or {}, ports=ports or {},
            # unless-stopped: the engine brings it back after a crash or a daemon restart, but what headway
            # stopped (a retained release) stays stopped; "always" for what must run whatever happened
            restart_policy={"Name": restart if isinstance(restart, str) else "unless-stopped"} if restart else None,
            log_config={"Type": "json-file", "Config": {"max-size": "10m", "max-file": "3"}},
            **kwargs)
        return container

    def start(self, container: Container) -> None:
        container.start()

    def signal_main_process(self, container: Container, argv: list[str]) -> OneOffResult:
        """Tell a container's main process something (e.g. reload) by running `argv` inside it. Not the engine's
        kill API: a signal sent through it marks the container as stopped by hand, and the engine then does not
        restart it after a daemon restart."""
        return self.exec(container, argv, timeout=30)

    def stop(self, container: Container, timeout: float) -> None:
        try:
            container.stop(timeout=int(max(1, timeout)))
        except _errors().NotFound:
            pass

    def remove(self, container: Container, *, volumes: bool = False) -> None:
        try:
            container.remove(force=True, v=volumes)
        except _errors().NotFound:
            pass

    def state(self, container: Container) -> dict[str, Any]:
        container.reload()
        return dict(container.attrs["State"])

    def last_exit_code(self, container: Container) -> int | None:
        """The exit code of the container's last exit, also once the engine restarted it (its state then says 0):
        from the engine's `die` events since it was created."""
        created = container.attrs.get("Created", "")
        try:
            since = int(time.mktime(time.strptime(created[:19], "%Y-%m-%dT%H:%M:%S"))) - time.timezone - 1 \
                if created else int(time.time()) - 3600
        except ValueError:
            since = int(time.time()) - 3600
        code = None
        try:
            for event in self.client.events(since=since, until=int(time.time()) + 1, decode=True,
                                            filters={"container": container.id, "event": "die"}):
                value = (event.get("Actor") or {}).get("Attributes", {}).get("exitCode")
                if value is not None:
                    code = int(value)
        except (_errors().DockerException, ValueError):
            return None
        return code

    def ip_address(self, container: Container, network: str | None = None) -> str | None:
        container.reload()
        nets = container.attrs["NetworkSettings"]["Networks"]
        if network and network in nets:
            return nets[network]["IPAddress"] or None
        for net in nets.values():
            if net.get("IPAddress"):
                return str(net["IPAddress"])
        return None

    def endpoint(self, container: Container, network: str | None, port: int) -> str | None:
        ip = self.ip_address(container, network)
        return f"{ip}:{port}" if ip else None

    def exec(self, container: Container, argv: list[str], *, timeout: float | None = None) -> OneOffResult:
        result: list[Any] = []

        def run() -> None:
            result.append(container.exec_run(argv, demux=False))

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        worker.join(timeout)
        if worker.is_alive():
            return OneOffResult(exit_code=-1, output="", timed_out=True)
        exit_code, output = result[0]
        return OneOffResult(exit_code=int(exit_code if exit_code is not None else -1),
                            output=(output or b"").decode(errors="replace"))

    def logs(self, container: Container, *, tail: int | str = "all", since: float | None = None,
             follow: bool = False) -> Iterator[str]:
        kwargs: dict[str, Any] = {"stream": True, "follow": follow, "tail": tail, "stdout": True, "stderr": True}
        if since is not None:
            kwargs["since"] = int(since)
        yield from log_lines(container.logs(**kwargs))

    def last_lines(self, container: Container, n: int = 20) -> str:
        try:
            return str(container.logs(tail=n, stdout=True, stderr=True).decode(errors="replace")).rstrip()
        except _errors().DockerException:
            return ""

    def run_oneoff(self, *, name: str, image: str, command: list[str], env: dict[str, str],
                   labels: dict[str, str], network: str | None, timeout: float,
                   on_line: LineSink | None = None, resources: Resources | None = None,
                   volumes: dict[str, dict[str, str]] | None = None,
                   prepare: Callable[[Container], None] | None = None) -> OneOffResult:
        """Run a command to completion in a fresh container, stream its output, then remove it. `prepare` is
        called with the container after it is created, before it starts."""
        container = self.create(name=name, image=image, command=command, env=env, labels=labels,
                                network=network, resources=resources, restart=False, volumes=volumes)
        tail: deque[str] = deque(maxlen=200)
        try:
            if prepare is not None:
                prepare(container)
            container.start()
            faults.point("oneoff:started")
            deadline = time.monotonic() + timeout
            reader = threading.Thread(target=self._pump, args=(container, tail, on_line), daemon=True)
            reader.start()
            try:
                status = container.wait(timeout=max(1, int(timeout)))
            except Exception:  # noqa: BLE001 - the wait timed out (requests raises its own ReadTimeout/ConnectionError)
                container.kill()
                reader.join(5)
                return OneOffResult(exit_code=-1, output="\n".join(tail), timed_out=True)
            reader.join(max(1.0, deadline - time.monotonic()))
            return OneOffResult(exit_code=int(status.get("StatusCode", -1)), output="\n".join(tail))
        finally:
            self.remove(container, volumes=True)  # its anonymous volumes (an image's VOLUME) go with it

    def container_env(self, container: Container) -> dict[str, str]:
        container.reload()
        pairs = ((container.attrs.get("Config") or {}).get("Env") or [])
        return dict(str(p).split("=", 1) for p in pairs if "=" in str(p))

    def user_ids(self, container: Container) -> tuple[int, int] | None:
        """uid and gid of the container's USER: numbers as given, names from the container's own /etc/passwd and
        /etc/group (read from its filesystem, so it need not run); None when they cannot be found."""
        container.reload()
        user = str((container.attrs.get("Config") or {}).get("User") or "")
        name, _, group = user.partition(":")
        if not name:
            return (0, 0)
        passwd = self._read_text(container, "/etc/passwd") if not (name.isdigit() and group.isdigit()) else ""
        uid = gid = None
        for line in (passwd or "").splitlines():
            fields = line.split(":")
            if len(fields) >= 4 and (fields[0] == name or (name.isdigit() and fields[2] == name)):
                uid, gid = int(fields[2]), int(fields[3]) if fields[3].isdigit() else None
                break
        if uid is None and name.isdigit():
            uid = int(name)
        if group:
            gid = int(group) if group.isdigit() else None
            if not group.isdigit():
                for line in (self._read_text(container, "/etc/group") or "").splitlines():
                    fields = line.split(":")
                    if len(fields) >= 3 and fields[0] == group and fields[2].isdigit():
                        gid = int(fields[2])
        if uid is None:
            return None
        return (uid, gid if gid is not None else 0)

    def _read_text(self, container: Container, path: str) -> str | None:
        """A small text file of a container's filesystem (created or running), or None."""
        import io
        import tarfile

        try:
            stream, _ = container.get_archive(path)
            data = b"".join(stream)
            with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                member = tar.next()
                fh = tar.extractfile(member) if member is not None else None
                return fh.read(1 << 20).decode(errors="replace") if fh is not None else None
        except (_errors().NotFound, _errors().APIError, tarfile.TarError):
            return None

    # -- read-only facts for audits (headway doctor) ------------------------------------------------------
    def image_config(self, ref: str) -> dict[str, Any] | None:
        """What an image says about itself: id, USER, ENV, labels, when it was made; None when it is absent."""
        try:
            attrs = self.client.images.get(ref).attrs
        except (_errors().ImageNotFound, _errors().NotFound):
            return None
        config = attrs.get("Config") or {}
        return {"id": str(attrs.get("Id") or ""), "user": str(config.get("User") or ""),
                "env": [str(e) for e in config.get("Env") or []], "labels": dict(config.get("Labels") or {}),
                "created": str(attrs.get("Created") or "")}

    def images(self, selector: list[str]) -> list[dict[str, Any]]:
        """The images carrying every label of `selector`, newest first."""
        found = self.client.api.images(filters={"label": selector})
        out = [{"id": str(i.get("Id") or ""), "tags": [t for t in i.get("RepoTags") or [] if t != "<none>:<none>"],
                "created": int(i.get("Created") or 0)} for i in found]
        return sorted(out, key=lambda i: i["created"], reverse=True)

    def save_image(self, ref: str) -> Iterator[bytes]:
        """`docker save` of one image: a tar stream (its config, manifest and layers), in chunks."""
        yield from self.client.api.get_image(ref, chunk_size=1 << 20)

    def published_ports(self, selector: list[str] | None = None) -> list[dict[str, Any]]:
        """Every port the engine publishes on the host, with the container that asked for it."""
        filters = {"label": selector} if selector else {}
        out = []
        for c in self.client.api.containers(all=False, filters=filters):
            for p in c.get("Ports") or []:
                if p.get("PublicPort"):
                    out.append({"container": (c.get("Names") or [""])[0].lstrip("/"),
                                "labels": c.get("Labels") or {}, "image": str(c.get("Image") or ""),
                                "ip": str(p.get("IP") or "0.0.0.0"), "private": int(p.get("PrivatePort") or 0),
                                "public": int(p["PublicPort"]), "proto": str(p.get("Type") or "tcp")})
        return out

    def container_facts(self, container: Container) -> dict[str, Any]:
        """How a container logs (driver and options) and its memory and CPU limits (0: none)."""
        container.reload()
        host = container.attrs.get("HostConfig") or {}
        log = host.get("LogConfig") or {}
        return {"log_type": str(log.get("Type") or ""), "log_opts": dict(log.get("Config") or {}),
                "memory": int(host.get("Memory") or 0), "nano_cpus": int(host.get("NanoCpus") or 0)}

    def _pump(self, container: Container, tail: deque[str], on_line: LineSink | None) -> None:
        for line in self.logs(container, follow=True):
            tail.append(line)
            if on_line:
                on_line(line)


def log_lines(chunks: Iterable[bytes]) -> Iterator[str]:
    """The lines of a log stream that arrives in chunks cut anywhere (a last line without its newline too)."""
    buf = b""
    for chunk in chunks:
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            yield line.decode(errors="replace")
    if buf:
        yield buf.decode(errors="replace")


def _split_reference(ref: str) -> tuple[str, str | None]:
    """repo and tag (or digest) of an image reference; the tag is None when the reference has neither."""
    if "@" in ref:
        repo, _, digest = ref.partition("@")
        return repo, digest
    head, sep, tail = ref.rpartition(":")
    if sep and "/" not in tail:
        return head, tail
    return ref, None


def _registry_error(action: str, ref: str, message: str) -> HeadwayError:
    low = message.lower()
    if any(w in low for w in ("unauthorized", "authentication required", "denied", "401", "no basic auth")):
        hint = "check the registry credentials (`registry:` in headway.yml and the secrets file)"
    elif any(w in low for w in ("not found", "manifest unknown", "does not exist")):
        hint = f"check that {ref} was pushed (e.g. by `headway build --push`), and the tag"
    elif any(w in low for w in ("connection refused", "no such host", "timeout", "dial tcp")):
        hint = "check the registry address and that it is reachable from this host"
    else:
        hint = "check the image reference and the registry"
    return HeadwayError(f"could not {action} {ref}: {message.splitlines()[0][:300]}", hint)
