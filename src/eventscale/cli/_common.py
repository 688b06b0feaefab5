"""What several ``eventscale`` commands share: exit codes, reading manifest files, the
``--env`` options and environment, and building the ``--target`` backends."""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eventscale.cli._output import REDACTOR
from eventscale.errors import ConfigError

if TYPE_CHECKING:
    from eventscale.jobs.base import JobTarget
    from eventscale.kube import KubeClient
    from eventscale.manifests.reader import Manifests
    from eventscale.scalers.params import TriggerContext
    from eventscale.spec import ScaledJobSpec, ScaledObjectSpec
    from eventscale.targets import Target

__all__ = (
    "EXIT_FAILED",
    "EXIT_INVALID",
    "EXIT_OK",
    "tidy_reason",
    "add_env_options",
    "environment",
    "job_target",
    "load",
    "make_target",
    "read_manifest_files",
    "resolve_contexts",
)

#: Exit status: every trigger was read / the command finished.
EXIT_OK = 0
#: Exit status: a trigger could not be read, or the command failed at run time.
EXIT_FAILED = 1
#: Exit status: invalid manifest, trace or command line.
EXIT_INVALID = 2

# Substrings of --env keys whose values are treated as secrets in the output filter.
_SECRET_ENV_HINTS = ("password", "passwd", "secret", "key", "token", "conn", "credential", "sas")


def read_manifest_files(paths: Sequence[str]) -> str:
    """The YAML of every file in ``paths`` (``-`` is stdin) as one multi-document text.

    Each is read as UTF-8 (a byte-order mark is dropped), at most 4 bytes per character
    of the manifest size limit (docs/errors.md, "Limits").
    """
    from eventscale.manifests.fields import MAX_MANIFEST_CHARS, decode_manifest

    limit = 4 * MAX_MANIFEST_CHARS
    texts = []
    for path in paths:
        try:
            if path == "-":
                stdin = getattr(sys.stdin, "buffer", None)
                if stdin is None:  # a text stream without bytes (tests, embedding)
                    texts.append(sys.stdin.read(MAX_MANIFEST_CHARS + 1))
                    continue
                data = stdin.read(limit + 1)
            else:
                with Path(path).open("rb") as handle:
                    data = handle.read(limit + 1)
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}", path=path) from None
        if len(data) > limit:
            raise ConfigError(f"larger than {limit} bytes", path=path)
        texts.append(decode_manifest(data, "stdin" if path == "-" else path))
    return "\n---\n".join(texts)


# The workload kinds whose pod template a manifest file may hold (KEDA's env source).
_WORKLOAD_KINDS = frozenset({"Deployment", "StatefulSet", "ReplicaSet"})


def load(
    paths: Sequence[str], *, jobs: bool = False, workloads: list[dict[str, Any]] | None = None
) -> Manifests:
    """Read the manifests in ``paths``; their Secrets' values are redacted from output.

    ``workloads``, when given, receives the files' Deployments, StatefulSets and
    ReplicaSets (their pod templates are the scale targets' environment).
    :class:`ConfigError` when they hold no ScaledObject (nor ScaledJob, with ``jobs``).
    """
    import yaml

    from eventscale.manifests.reader import load_manifests

    text = read_manifest_files(paths)
    manifests = load_manifests(text, ignore_unknown_kinds=True)
    if workloads is not None:
        # load_manifests has parsed (and bounded) the same text: this cannot fail now.
        workloads.extend(
            doc
            for doc in yaml.safe_load_all(text)
            if isinstance(doc, dict) and doc.get("kind") in _WORKLOAD_KINDS
        )
    for data in manifests.secrets.values():
        REDACTOR.add(data.values())
    if not manifests.scaled_objects and not (jobs and manifests.scaled_jobs):
        kinds = "ScaledObject or ScaledJob" if jobs else "ScaledObject"
        raise ConfigError(f"the manifest holds no {kinds}", path=", ".join(paths))
    return manifests


def add_env_options(p: argparse.ArgumentParser) -> None:
    """Add ``--env KEY=VALUE`` and ``--no-os-env`` to a command's parser."""
    p.add_argument(
        "--env",
        action="append",
        metavar="KEY=VALUE",
        help="an environment variable for ...FromEnv parameters (repeatable); "
        "the process environment is used too unless --no-os-env",
    )
    p.add_argument("--no-os-env", action="store_true", help="do not read the process environment")


def environment(args: argparse.Namespace) -> dict[str, str]:
    """The environment ``--env`` and ``--no-os-env`` describe.

    Values of keys that look secret (``PASSWORD``, ``TOKEN``...) are redacted from output.
    """
    env: dict[str, str] = dict(os.environ) if not args.no_os_env else {}
    env.update(_explicit_env(args))
    return env


def _explicit_env(args: argparse.Namespace) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in args.env or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            # The item may hold a secret: do not echo it.
            raise ConfigError("takes KEY=VALUE (an item has no '=' or no key)", path="--env")
        env[key] = value
        if any(hint in key.lower() for hint in _SECRET_ENV_HINTS):
            REDACTOR.add([value])
    return env


async def resolve_contexts(
    manifests: Manifests,
    spec: ScaledObjectSpec | ScaledJobSpec,
    args: argparse.Namespace,
    client: KubeClient | None = None,
    workloads: Sequence[dict[str, Any]] = (),
    target: object = None,
) -> tuple[TriggerContext, ...]:
    """Each trigger's context, looking objects up in the files first, then the cluster.

    ``workloads`` are the files' workload documents (:func:`load`); a Docker ``target``
    gives its containers' own environment when the files and cluster give none. Secrets, ConfigMaps
    and (Cluster)TriggerAuthentications missing from the manifest
    files are read through ``client`` (ClusterTriggerAuthentication Secrets from
    ``KEDA_CLUSTER_OBJECT_NAMESPACE``, default ``keda``). ``...FromEnv`` reads, lowest
    precedence first: the process environment (unless ``--no-os-env``), the scale
    target container's environment (its pod template in the files or the cluster), then
    ``--env``. docs/authentication.md describes the order.
    """
    from eventscale.authentication import (
        AuthResolver,
        cluster_authentications,
        default_sources,
        reads_environment,
        workload_env,
    )
    from eventscale.manifests.reader import load_trigger_authentication

    sources = default_sources(manifests, kube_client=client)
    lookup = cluster_authentications(client, load_trigger_authentication) if client else None
    # The container's environment is read only when something reads it: a ...FromEnv
    # parameter or a TriggerAuthentication env entry.
    wants_env = reads_environment(spec, manifests.trigger_authentications.values())
    workload = (
        await workload_env(spec, sources=sources, documents=workloads, client=client)
        if wants_env
        else None
    )
    if workload is None and wants_env and type(target).__name__ == "DockerTarget":
        from eventscale.redaction import Secret
        from eventscale.targets.docker import DockerTarget

        assert isinstance(target, DockerTarget)
        docker_env = await target.container_env()
        if docker_env is not None:
            workload = {k: Secret(v) for k, v in docker_env.items()}
    env: dict[str, str] = dict(os.environ) if not args.no_os_env else {}
    origin = "--env and the process environment" if not args.no_os_env else "--env"
    if workload is not None:
        for value in workload.values():
            if len(value.reveal()) >= 8:  # may come from a Secret: keep it out of output
                REDACTOR.add([value.reveal()])
        env.update({k: v.reveal() for k, v in workload.items()})
        origin = "the scale target container's environment, --env" + (
            " and the process environment" if not args.no_os_env else ""
        )
    env.update(_explicit_env(args))

    async def container_env(name: str) -> dict[str, str]:
        found = await workload_env(
            spec, sources=sources, documents=workloads, client=client, container=name
        )
        for value in (found or {}).values():
            if len(value.reveal()) >= 8:
                REDACTOR.add([value.reveal()])
        return {k: v.reveal() for k, v in (found or {}).items()}

    resolver = AuthResolver(
        sources=sources,
        env=env,
        cluster_namespace=os.environ.get("KEDA_CLUSTER_OBJECT_NAMESPACE") or "keda",
        authentications=lookup,
        env_origin=origin,
        container_env=container_env if workload is not None else None,
    )
    return await resolver.trigger_contexts(spec, manifests.trigger_authentications)


def make_target(kind: str, spec: Any, *, replicas: int = 0, client: Any = None) -> Target:
    """The ``--target`` backend (``memory``, ``kubernetes``, ``docker``) for a ScaledObject."""
    if kind == "memory":
        from eventscale.targets.memory import MemoryTarget

        return MemoryTarget(replicas=replicas, name=spec.scale_target_ref.name)
    if kind == "kubernetes":
        from eventscale.targets.kubernetes import KubernetesTarget

        return KubernetesTarget.from_ref(
            spec.scale_target_ref, namespace=spec.namespace, client=client
        )
    if kind == "docker":
        from eventscale.targets.docker import DockerTarget

        return DockerTarget(spec.scale_target_ref.name)
    raise ConfigError(f"unknown target {kind!r} (kubernetes, docker or memory)", path="--target")


def job_target(
    kind: str, spec: Any, *, client: Any = None, job_seconds: float | None = None
) -> JobTarget:
    """The job backend ``--target`` names, for one ScaledJob.

    ``none`` is an empty in-memory backend (``evaluate`` without a target); ``memory``
    runs each job ``job_seconds`` long.
    """
    if kind in ("none", "memory"):
        from eventscale.jobs.memory import MemoryJobTarget

        if kind == "none" or job_seconds is None:
            return MemoryJobTarget()
        return MemoryJobTarget(duration=job_seconds, name=spec.name)
    if kind == "kubernetes":
        from eventscale.jobs.kubernetes import KubernetesJobTarget

        if client is None:
            return KubernetesJobTarget.from_spec(spec)
        return KubernetesJobTarget.from_spec(spec, client=client)
    if kind == "docker":
        from eventscale.jobs.docker import DockerJobTarget

        return DockerJobTarget.from_spec(spec)
    raise ConfigError(f"unknown target {kind!r} (kubernetes, docker or memory)", path="--target")


_DURATION = re.compile(r"(?<![\w.])([0-9]+\.[0-9]{2,})s\b")


def tidy_reason(reason: str) -> str:
    """``reason`` with its durations rounded for people: ``7.99955s`` reads ``8s``,
    ``12.345s`` reads ``12.3s`` (one decimal at most, trailing zeros dropped).

    The engine writes exact seconds (``engine/lifecycle.py``); JSON output keeps them.
    """
    return _DURATION.sub(lambda m: f"{round(float(m.group(1)), 1):g}s", reason)
