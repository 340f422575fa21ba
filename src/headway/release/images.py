"""The images of a release: one per distinct build or prebuilt reference, shared by the roles that use it.

Planned as plain data first (which image each role runs, built or pulled, under which reference), then made by
`make_images`: builds tag `<repository>:<version>`; pulls are recorded by digest, so a rollback or a scale-up
runs exactly the bytes that were deployed even if the tag moves in the registry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from headway.config.model import ImageBuild, PrebuiltImage
from headway.config.resolve import Target
from headway.engine import labels as L
from headway.errors import ConfigError

if TYPE_CHECKING:
    from headway.engine.base import Engine
    from headway.release.report import Reporter

RELEASE = "(release)"  # the key of the image the release and seed commands run from


@dataclass(frozen=True)
class ImageJob:
    """One image of a release: built from `build`, or pulled from `reference`."""

    reference: str  # repo:tag to build to, or to pull
    build: ImageBuild | None  # None: pulled
    users: list[str] = field(default_factory=list)  # role names (and RELEASE) that run it

    @property
    def pulled(self) -> bool:
        return self.build is None

    @property
    def repository(self) -> str:
        return self.reference.rpartition(":")[0] if ":" in self.reference.rsplit("/", 1)[-1] else self.reference


@dataclass(frozen=True)
class ImagePlan:
    jobs: list[ImageJob]

    def for_user(self, user: str) -> ImageJob:
        return next(j for j in self.jobs if user in j.users)


def _with_tag(reference: str, tag: str) -> str:
    base = reference.split("@", 1)[0]
    last = base.rsplit("/", 1)[-1]
    if ":" in last:
        base = base.rpartition(":")[0]
    return f"{base}:{tag}"


def repository_for(target: Target, owner: str | None, build: ImageBuild) -> str:
    """Where the build of the app image (owner None) or of a role's own image is tagged."""
    if build.name:
        return build.name
    return target.app if owner is None else f"{target.app}-{owner}"


def plan_images(target: Target, version: str, image_tag: str | None = None) -> ImagePlan:
    """Which images this release needs. `image_tag`: deploy what CI pushed — every image is pulled at that tag
    (built images from their `name` repository) instead of being built here."""
    jobs: dict[str, ImageJob] = {}

    def add(user: str, owner: str | None, source: ImageBuild | PrebuiltImage) -> None:
        if isinstance(source, PrebuiltImage):
            ref = _with_tag(source.pull, image_tag) if image_tag else source.pull
            key, build = f"pull:{ref}", None
        elif image_tag is not None:
            if not source.name:
                what = "image" if owner is None else f"roles.{owner}.image"
                raise ConfigError(f"--image-tag pulls every image from its registry, but {what} has no `name`",
                                  f"set {what}.name to the repository CI pushes to, e.g. "
                                  f"registry.example.com/org/{target.app}")
            ref = f"{source.name}:{image_tag}"
            key, build = f"pull:{ref}", None
        else:
            ref = f"{repository_for(target, owner, source)}:{version}"
            key, build = "build:" + source.model_dump_json(), source
        job = jobs.get(key)
        if job is None:
            jobs[key] = ImageJob(reference=ref, build=build, users=[user])
        else:
            job.users.append(user)

    app_image = target.config.image
    for role in target.roles.values():
        own = target.config.roles[role.name].image
        add(role.name, role.name if own is not None else None, own or app_image)
    release_role = target.config.release_role
    if release_role is None:
        add(RELEASE, None, app_image)
    else:
        role_image = target.config.roles[release_role].image
        add(RELEASE, release_role if role_image is not None else None, role_image or app_image)
    return ImagePlan(list(jobs.values()))


def registry_auth(target: Target) -> dict[str, str] | None:
    """Credentials for the configured registry, with ${SECRET} references filled in; None: anonymous."""
    reg = target.config.registry
    if reg is None or reg.username is None or reg.password is None:
        return None
    return {"username": target.resolve_text("registry.username", reg.username),
            "password": target.resolve_text("registry.password", reg.password),
            "serveraddress": reg.server}


def auth_for(target: Target, reference: str) -> dict[str, str] | None:
    reg = target.config.registry
    if reg is None or not reference.startswith(reg.server.rstrip("/") + "/"):
        return None
    return registry_auth(target)


_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


def make_images(plan: ImagePlan, target: Target, engine: Engine, build_root: Path, reporter: Reporter
                ) -> dict[str, str]:
    """Build or pull every image of `plan`; user -> the reference its containers run (by digest when pulled)."""
    out: dict[str, str] = {}
    for job in plan.jobs:
        if job.build is None:
            with reporter.step(f"pull image {job.reference}"):
                ref = engine.pull(job.reference, auth_for(target, job.reference))
        else:
            cfg = job.build
            with reporter.step(f"build image {job.reference}"):
                engine.build(context=(build_root / cfg.context).resolve(), dockerfile=cfg.dockerfile,
                             tag=job.reference, args=cfg.args, target=cfg.target,
                             labels=L.owned("image", app=target.app), on_line=None)
            ref = job.reference
        for user in job.users:
            out[user] = ref
    return out


def push_images(plan: ImagePlan, target: Target, engine: Engine, reporter: Reporter) -> dict[str, str]:
    """Push every built image to its repository; reference -> repo@digest as the registry stores it."""
    out: dict[str, str] = {}
    for job in plan.jobs:
        if job.build is None:
            continue
        if "/" not in job.repository:
            raise ConfigError(f"{job.reference} has no registry to push to",
                              "set image.name (or roles.NAME.image.name) to e.g. registry.example.com/org/app")
        with reporter.step(f"push {job.reference}"):
            out[job.reference] = engine.push(job.reference, auth_for(target, job.reference))
    return out
