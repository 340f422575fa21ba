"""Errors a user can act on. Each carries the fix and the process exit code the CLI returns."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FAILURE = 1
    USAGE = 2  # bad arguments, invalid config, missing secrets
    LOCKED = 3  # another deploy holds the lock
    BUILD_FAILED = 4
    RELEASE_COMMAND_FAILED = 5
    HEALTH_CHECK_FAILED = 6
    PROXY_FAILED = 7  # nginx config invalid, proxy not running, port taken
    DOCKER_UNAVAILABLE = 8
    NOT_FOUND = 9  # nothing deployed, unknown release
    ABORTED = 10  # the user said no
    CANARY_FAILED = 11  # the canary breached its thresholds (or was aborted) and traffic went back


class HeadwayError(Exception):
    """An error with a message for the user and, where known, what to do about it."""

    exit_code: ExitCode = ExitCode.FAILURE

    def __init__(self, message: str, fix: str | None = None, *, details: str | None = None,
                 exit_code: ExitCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix
        self.details = details
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message if not self.fix else f"{self.message}\n  fix: {self.fix}"


class ConfigError(HeadwayError):
    exit_code = ExitCode.USAGE


class LockHeld(HeadwayError):
    exit_code = ExitCode.LOCKED


class BuildFailed(HeadwayError):
    exit_code = ExitCode.BUILD_FAILED


class ReleaseCommandFailed(HeadwayError):
    exit_code = ExitCode.RELEASE_COMMAND_FAILED


class HealthCheckFailed(HeadwayError):
    exit_code = ExitCode.HEALTH_CHECK_FAILED


class ProxyError(HeadwayError):
    exit_code = ExitCode.PROXY_FAILED


class DockerUnavailable(HeadwayError):
    exit_code = ExitCode.DOCKER_UNAVAILABLE


class NotFound(HeadwayError):
    exit_code = ExitCode.NOT_FOUND


class Aborted(HeadwayError):
    exit_code = ExitCode.ABORTED


class CanaryFailed(HeadwayError):
    exit_code = ExitCode.CANARY_FAILED
