"""A small private client for the Docker Engine API, shared by the Docker targets.

Both the Docker target (:mod:`eventscale.targets.docker`) and the Docker ScaledJob
target (:mod:`eventscale.jobs.docker`) speak the Engine API with aiohttp over the
daemon's unix socket (or plain ``tcp://``). This module holds what they share: the
URL handling, one lazily opened session, a request helper that bounds every call
with a timeout and turns transport failures and error statuses into
:class:`~eventscale.errors.TargetError`, and the few container calls both make.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import anyio

from eventscale._optional import import_optional
from eventscale.errors import ConfigError, TargetError

if TYPE_CHECKING:
    import aiohttp

__all__ = ("DockerAPI", "container_name_prefix")

_DEFAULT_URL = "unix:///var/run/docker.sock"
_NAME_CHARS = re.compile(r"[^a-zA-Z0-9_.-]+")


def container_name_prefix(prefix: str, fallback: str) -> str:
    """``prefix`` made safe for a container name (``fallback`` when nothing is left)."""
    return _NAME_CHARS.sub("-", prefix).strip("-.") or fallback


class DockerAPI:
    """One Docker daemon, spoken to on behalf of the target named ``owner``.

    :param url: ``unix:///path`` or ``tcp://host:port``; default ``$DOCKER_HOST``,
        else ``unix:///var/run/docker.sock``.
    :param owner: the name put on every :class:`TargetError` as ``target``.
    :param timeout: seconds allowed for each call.
    :param what: the feature named if aiohttp is not installed.
    :raises ConfigError: an unsupported URL scheme (path ``url``).
    """

    def __init__(self, url: str | None, *, owner: str, timeout: float, what: str) -> None:
        self._aiohttp = import_optional("aiohttp", extra="docker", what=what)
        self.owner = owner
        self.timeout = timeout
        self.url = url or os.environ.get("DOCKER_HOST") or _DEFAULT_URL
        if self.url.startswith("unix://"):
            self._socket: str | None = self.url.removeprefix("unix://")
            self._base = "http://docker"
        elif self.url.startswith(("tcp://", "http://")):
            self._socket = None
            self._base = "http://" + self.url.split("://", 1)[1].rstrip("/")
        else:
            raise ConfigError(f"unsupported Docker URL {self.url!r}", path="url")
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            aiohttp = self._aiohttp
            connector = (
                aiohttp.UnixConnector(path=self._socket)
                if self._socket is not None
                else aiohttp.TCPConnector()
            )
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def request(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        extra_time: float = 0.0,
        ok: Sequence[int] = (),
    ) -> tuple[int, Any]:
        """One API call: ``(status, decoded JSON body)``.

        :param extra_time: seconds on top of the timeout (a stop's grace period).
        :param ok: error statuses returned instead of raised.
        :raises TargetError: a timeout, an unreachable daemon, or a status >= 400
            not in ``ok`` (with the daemon's message).
        """
        limit = self.timeout + extra_time
        session = self._get_session()
        kwargs: dict[str, Any] = {}
        if body is not None:
            kwargs["data"] = json.dumps(body)
            kwargs["headers"] = {"Content-Type": "application/json"}
        try:
            with anyio.fail_after(limit):
                async with session.request(method, self._base + path, **kwargs) as resp:
                    raw = await resp.read()
                    status = resp.status
        except TimeoutError as exc:
            raise TargetError(
                f"{method} {path} timed out after {limit:g}s", target=self.owner
            ) from exc
        except self._aiohttp.ClientError as exc:
            raise TargetError(
                f"cannot reach the Docker daemon at {self.url}: {exc}", target=self.owner
            ) from exc
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = raw.decode(errors="replace")
        if status >= 400 and status not in ok:
            message = payload.get("message") if isinstance(payload, dict) else payload
            raise TargetError(
                f"{method} {path}: {message or 'failed'}", target=self.owner, status=status
            )
        return status, payload

    async def list_labelled(self, selector: Mapping[str, str]) -> list[dict[str, Any]]:
        """Every container (running or not) that carries all of ``selector``'s labels.

        The daemon filters by label; the result is checked again here, so a container
        outside the set is never returned.
        """
        filters = json.dumps({"label": [f"{k}={v}" for k, v in selector.items()]})
        _, listing = await self.request(
            "GET", f"/containers/json?all=true&filters={quote(filters)}"
        )
        out: list[dict[str, Any]] = []
        for item in listing or ():
            labels = item.get("Labels") or {}
            if any(labels.get(k) != v for k, v in selector.items()):
                continue  # never act on a container outside the set
            out.append(item)
        return out

    async def inspect(self, ref: str, *, ok: Sequence[int] = ()) -> tuple[int, Any]:
        """``GET /containers/{ref}/json``."""
        return await self.request("GET", f"/containers/{ref}/json", ok=ok)

    async def create_and_start(
        self, name: str, body: Mapping[str, Any], *, noun: str, pull_hint: str
    ) -> str:
        """Create the container ``name`` from ``body`` and start it; return its id.

        Images are never pulled: a missing image is a :class:`TargetError` (status
        404) naming the image, ``noun`` (what was being created) and ``pull_hint``.
        A container that was created but would not start is removed again.
        """
        status, created = await self.request(
            "POST", f"/containers/create?name={quote(name)}", body, ok=(404,)
        )
        if status == 404:
            message = created.get("message") if isinstance(created, dict) else created
            raise TargetError(
                f"cannot create {noun} from image {body.get('Image')!r}: {message} "
                f"({pull_hint}: load or pull it on the Docker host first)",
                target=self.owner,
                status=404,
            )
        cid = str(created["Id"])
        try:
            await self.request("POST", f"/containers/{cid}/start", ok=(304,))
        except TargetError:
            with anyio.CancelScope(shield=True):
                await self.remove(cid)
            raise
        return cid

    async def stop(self, ref: str, wait: int) -> None:
        """Stop a container, giving it ``wait`` seconds after SIGTERM (gone is fine)."""
        await self.request(
            "POST", f"/containers/{ref}/stop?t={wait}", extra_time=wait, ok=(304, 404)
        )

    async def remove(self, ref: str) -> None:
        """Remove a container and its anonymous volumes, killing it if it runs."""
        await self.request("DELETE", f"/containers/{quote(ref)}?force=true&v=true", ok=(404,))

    async def ping(self) -> None:
        """Check that the daemon answers."""
        await self.request("GET", "/_ping")

    async def aclose(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None
