"""The stand-in's HTTP side: routing, the REST verbs, PATCH, the status subresource,
finalizers, server-side Tables and watch streams."""

from __future__ import annotations

import base64
import copy
import json
import select
import socket
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from servers.kubernetes import patching
from servers.kubernetes.discovery import NOT_FOUND, discovery, groups, openapi_v3
from servers.kubernetes.errors import ApiError, status_body
from servers.kubernetes.resources import BY_PATH, Resource, table
from servers.kubernetes.state import ApiCall, Change, Key, KubeApiStandIn, now

_METHOD_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
# How a watch cut mid-stream ends: half an event, then the connection drops.
_HALF_EVENT = b'{"type":"MODIFIED","object":{"kind":"'


class Server(ThreadingHTTPServer):
    daemon_threads = True
    api: KubeApiStandIn

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hangs up mid-response (watches) is not news


def _first(query: dict[str, list[str]], name: str) -> str:
    return (query.get(name) or [""])[0]


class Handler(BaseHTTPRequestHandler):
    server: Server
    protocol_version = "HTTP/1.1"
    query: dict[str, list[str]]

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, code: int, body: dict[str, Any]) -> None:
        raw = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.send_header("Audit-Id", str(uuid.uuid4()))
        self.end_headers()
        self.wfile.write(raw)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        if not length:
            return None
        raw = self.rfile.read(length)
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise ApiError(
                400, "BadRequest", f"the body of the request was in an unknown format: {exc}"
            ) from exc

    def _handle(self, method: str) -> None:
        api = self.server.api
        path, _, query = self.path.partition("?")
        self.query = urllib.parse.parse_qs(query)
        auth = self.headers.get("Authorization", "")
        user = api.tokens.get(auth.removeprefix("Bearer ")) if auth.startswith("Bearer ") else None
        with api.lock:
            api.log.append((method, path, user or ""))
            hang = next((ev for p, ev in api.hanging.items() if p in path), None)
        try:
            body = self._body()
        except ApiError as err:
            self._reply(err.code, err.body)
            return
        if hang is not None:
            hang.wait(30)
        try:
            if user is None:
                raise ApiError(401, "Unauthorized", "Unauthorized")
            if method in ("POST", "PUT") and not isinstance(body, dict):
                raise ApiError(400, "BadRequest", "the body must be an object")
            reply = self._route(method, path, body, user)
            if reply is None:
                return  # a watch, already streamed
            code, payload = reply
        except ApiError as err:
            code, payload = err.code, err.body
        self._reply(code, payload)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    # -- routing -----------------------------------------------------------------------

    def _route(
        self, method: str, path: str, body: Any, user: str
    ) -> tuple[int, dict[str, Any]] | None:
        api = self.server.api
        parts = [p for p in path.split("/") if p]
        if parts == ["version"]:
            return 200, {"major": "1", "minor": "32", "gitVersion": "v1.32.0-eventscale-standin"}
        if parts == ["api"]:
            return 200, {
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [],
            }
        if parts == ["apis"]:
            return 200, groups()
        if parts[:2] == ["openapi", "v3"]:
            return 200, openapi_v3("/".join(parts[2:]))
        if not parts or parts[0] not in ("api", "apis"):
            raise ApiError(404, "NotFound", NOT_FOUND)
        prefix_len = 2 if parts[0] == "api" else 3
        prefix = "/".join(parts[:prefix_len])
        rest = parts[prefix_len:]
        if not rest:
            return 200, discovery(prefix)
        if prefix == "api/v1" and rest[0] == "namespaces" and len(rest) <= 2:
            return self._namespaces(method, rest[1] if len(rest) > 1 else None)
        namespace: str | None
        if len(rest) >= 3 and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        else:
            namespace = None
        res = BY_PATH.get((prefix, rest[0]))
        if res is None or len(rest) > 3:
            raise ApiError(404, "NotFound", NOT_FOUND)
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if res.namespaced and namespace is None and name is not None:
            raise ApiError(404, "NotFound", NOT_FOUND)
        if not res.namespaced:
            if namespace is not None:
                raise ApiError(404, "NotFound", NOT_FOUND)
            namespace = ""
        if sub is not None and not (
            (sub == "scale" and res.scale) or (sub == "status" and res.status)
        ):
            raise ApiError(404, "NotFound", NOT_FOUND)
        watching = method == "GET" and _first(self.query, "watch") in ("true", "1")
        if method == "GET":
            verb = "watch" if watching else "get" if name else "list"
        elif method == "DELETE" and name is None:
            verb = "deletecollection"
        else:
            verb = _METHOD_VERBS[method]
        resource = f"{res.plural}/{sub}" if sub else res.plural
        with api.lock:
            api.calls.append(ApiCall(verb, res.group, resource, self.headers.get("User-Agent", "")))
        self._check_access(verb, res, resource, namespace or "", name, user)
        if watching:
            self._watch(res, namespace)
            return None
        if method == "POST" and name:
            raise ApiError(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
            )
        if method == "DELETE" and name is None:
            raise ApiError(405, "MethodNotAllowed", "deletecollection is not served")
        with api.lock:
            if name is None:
                return self._collection(method, res, namespace, body)
            assert namespace is not None
            return self._object(method, res, (res.prefix, res.plural, namespace, name), sub, body)

    def _namespaces(self, method: str, name: str | None) -> tuple[int, dict[str, Any]]:
        """Namespaces exist when named (reads only): kubectl asks for one now and then."""
        if method != "GET":
            raise ApiError(405, "MethodNotAllowed", "namespaces are read-only in the stand-in")

        def namespace(ns: str) -> dict[str, Any]:
            return {
                "kind": "Namespace",
                "apiVersion": "v1",
                "metadata": {"name": ns, "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, ns))},
                "spec": {"finalizers": ["kubernetes"]},
                "status": {"phase": "Active"},
            }

        api = self.server.api
        if name is not None:
            return 200, namespace(name)
        with api.lock:
            names = sorted({k[2] for k in api.objects if k[2]})
            revision = str(api.revision)
        return 200, {
            "kind": "NamespaceList",
            "apiVersion": "v1",
            "metadata": {"resourceVersion": revision},
            "items": [namespace(n) for n in names],
        }

    def _check_access(
        self, verb: str, res: Resource, resource: str, namespace: str, name: str | None, user: str
    ) -> None:
        api = self.server.api
        if (verb, resource, name) in api.denied or (verb, resource, None) in api.denied:
            target = f'{res.group_resource} "{name}"' if name else res.group_resource
            raise ApiError(
                403,
                "Forbidden",
                f'{target} is forbidden: User "{user}" cannot {verb} resource "{resource}" '
                f'in API group "{res.group}" '
                + (f'in the namespace "{namespace}"' if namespace else "at the cluster scope"),
                {"name": name or "", "group": res.group, "kind": res.plural},
            )

    def _as_table(self) -> bool:
        return "as=Table" in self.headers.get("Accept", "")

    def _selected(
        self, res: Resource, key: Key, obj: dict[str, Any], namespace: str | None
    ) -> bool:
        return (
            key[:2] == (res.prefix, res.plural)
            and (namespace is None or key[2] == namespace)
            and patching.selects(_first(self.query, "labelSelector"), obj)
            and patching.field_selects(_first(self.query, "fieldSelector"), obj)
        )

    def _collection(
        self, method: str, res: Resource, namespace: str | None, body: Any
    ) -> tuple[int, dict[str, Any]]:
        api = self.server.api
        if method == "GET":
            selected = [
                (k, o)
                for k, o in sorted(api.objects.items())
                if self._selected(res, k, o, namespace)
            ]
            revision = str(api.revision)
            meta: dict[str, Any] = {}
            token = _first(self.query, "continue")
            if token:  # the next page: items after the last one sent, listed as of then
                try:
                    state = json.loads(base64.urlsafe_b64decode(token))
                    revision, after = str(state["rv"]), tuple(state["after"])
                except (ValueError, KeyError, TypeError) as exc:
                    raise ApiError(400, "BadRequest", "invalid continue token") from exc
                if int(revision) < api.compacted:
                    raise ApiError(
                        410,
                        "Expired",
                        "The provided continue parameter is too old to display a consistent "
                        "list result. You can start a new list without the continue parameter.",
                    )
                selected = [(k, o) for k, o in selected if k[2:] > after]
            limit = int(_first(self.query, "limit") or 0)
            if 0 < limit < len(selected):
                last = selected[limit - 1][0]
                state = {"rv": int(revision), "after": list(last[2:])}
                meta["continue"] = base64.urlsafe_b64encode(json.dumps(state).encode()).decode()
                meta["remainingItemCount"] = len(selected) - limit
                selected = selected[:limit]
            items = [copy.deepcopy(o) for _, o in selected]
            if self._as_table():
                include = _first(self.query, "includeObject") or "Metadata"
                return 200, table(res, items, revision, include) | {
                    "metadata": {"resourceVersion": revision, **meta}
                }
            return 200, {
                "kind": f"{res.kind}List",
                "apiVersion": res.api_version,
                "metadata": {"resourceVersion": revision, **meta},
                "items": items,
            }
        if method != "POST" or namespace is None:
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method")
        new_name = (body.get("metadata") or {}).get("name")
        if not new_name:
            raise ApiError(
                422,
                "Invalid",
                f'{res.kind} "" is invalid: metadata.name: Required value: name is required',
            )
        if (res.prefix, res.plural, namespace, new_name) in api.objects:
            raise ApiError(
                409,
                "AlreadyExists",
                f'{res.group_resource} "{new_name}" already exists',
                {"name": new_name, "group": res.group, "kind": res.plural},
            )
        meta = body.setdefault("metadata", {})
        meta["namespace"] = namespace
        for owned in (
            "resourceVersion",
            "uid",
            "generation",
            "deletionTimestamp",
            "creationTimestamp",
        ):
            meta.pop(owned, None)
        body["apiVersion"], body["kind"] = res.api_version, res.kind
        if res.status:
            body.pop("status", None)  # a status subresource: status is written there
        if res.kind == "Job":  # what the Job controller does at once: one pending pod
            body["status"] = {"active": 1, "ready": 0, "startTime": now()}
            created = api.put(body)
            api._start_job_pod(created)
            return 201, created
        return 201, api.put(body)

    def _not_found(self, res: Resource, name: str) -> ApiError:
        return ApiError(
            404,
            "NotFound",
            f'{res.group_resource} "{name}" not found',
            {"name": name, "group": res.group, "kind": res.plural},
        )

    def _object(
        self, method: str, res: Resource, key: Key, sub: str | None, body: Any
    ) -> tuple[int, dict[str, Any]]:
        api = self.server.api
        obj = api.objects.get(key)
        if obj is None:
            raise self._not_found(res, key[3])
        if sub == "scale":
            return self._scale(method, res, key, obj, body)
        if method == "GET":
            if self._as_table():
                include = _first(self.query, "includeObject") or "Metadata"
                return 200, table(res, [copy.deepcopy(obj)], str(api.revision), include)
            return 200, copy.deepcopy(obj)
        if method == "DELETE":
            return self._delete(res, key, obj)
        if method == "PATCH":
            body = self._patched(res, obj, body)
        assert isinstance(body, dict)
        self._check_version(res, key, obj, body)
        if sub == "status":  # only the status changes
            new = copy.deepcopy(obj)
            if "status" in body:
                new["status"] = body["status"]
            else:
                new.pop("status", None)
            return 200, api.put(new)
        return self._update(res, key, obj, body)

    def _patched(self, res: Resource, obj: dict[str, Any], patch: Any) -> dict[str, Any]:
        kind = self.headers.get("Content-Type", "").split(";")[0].strip()
        try:
            if kind == "application/merge-patch+json" or (
                kind == "application/strategic-merge-patch+json"
                and not res.group.endswith("keda.sh")
                and res.group != "batch.example.com"
            ):
                patched = patching.merge_patch(copy.deepcopy(obj), patch)
            elif kind == "application/json-patch+json":
                patched = patching.json_patch(obj, patch)
            else:
                raise ApiError(
                    415,
                    "UnsupportedMediaType",
                    f"the body of the request was in an unknown format - accepted media types "
                    f'include: application/json-patch+json, application/merge-patch+json; got "{kind}"',
                )
        except patching.PatchError as exc:
            raise ApiError(422, "Invalid", f"the patch cannot be applied: {exc}") from exc
        if not isinstance(patched, dict):
            raise ApiError(422, "Invalid", "the patched object is not an object")
        return patched

    def _update(
        self, res: Resource, key: Key, obj: dict[str, Any], body: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        api = self.server.api
        old_meta = obj["metadata"]
        given = body.get("metadata") or {}
        meta = {
            **old_meta,
            **{
                k: v
                for k, v in given.items()
                if k in ("labels", "annotations", "finalizers", "ownerReferences")
            },
        }
        for k in ("labels", "annotations", "finalizers", "ownerReferences"):
            if k not in given:
                meta.pop(k, None)
        finalizers = list(meta.get("finalizers") or [])
        if not finalizers:
            meta.pop("finalizers", None)
        if old_meta.get("deletionTimestamp") and set(finalizers) - set(
            old_meta.get("finalizers") or []
        ):
            raise ApiError(
                422,
                "Invalid",
                f'{res.kind} "{key[3]}" is invalid: metadata.finalizers: Forbidden: no new '
                "finalizers can be added if the object is being deleted",
            )
        body["metadata"] = meta
        body["apiVersion"], body["kind"] = obj["apiVersion"], obj["kind"]
        if res.status:  # the main resource ignores status
            if "status" in obj:
                body["status"] = copy.deepcopy(obj["status"])
            else:
                body.pop("status", None)
        if meta.get("deletionTimestamp") and not finalizers:
            api.objects[key] = body
            return 200, api.remove(key)
        return 200, api.put(body)

    def _delete(self, res: Resource, key: Key, obj: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        api = self.server.api
        namespace, name = key[2], key[3]
        api.deleted.append((res.plural, namespace, name, self.query))
        held = api.delete(key)
        if held is not None:  # finalizers: marked, still there
            return 200, held
        if res.kind == "Job":  # the garbage collector removes the Job's pods
            for pod in api.job_pods(namespace, name):
                api.remove(("api/v1", "pods", namespace, pod["metadata"]["name"]))
        return 200, status_body(200, "", "") | {
            "status": "Success",
            "details": {"name": name, "kind": res.plural},
        }

    def _check_version(
        self, res: Resource, key: Key, obj: dict[str, Any], body: dict[str, Any]
    ) -> None:
        api = self.server.api
        pending = api.pending_conflicts.get(key, 0)
        if pending:
            api.pending_conflicts[key] = pending - 1
            obj.setdefault("metadata", {}).setdefault("annotations", {})[
                "standin/concurrent-writes"
            ] = str(pending)
            api.touch(obj)
        wanted = (body.get("metadata") or {}).get("resourceVersion")
        if wanted and wanted != obj["metadata"]["resourceVersion"]:
            raise ApiError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {res.group_resource} "{key[3]}": '
                "the object has been modified; please apply your changes to the latest "
                "version and try again",
                {"name": key[3], "group": res.group, "kind": res.plural},
            )

    def _scale(
        self, method: str, res: Resource, key: Key, obj: dict[str, Any], body: Any
    ) -> tuple[int, dict[str, Any]]:
        api = self.server.api
        if method not in ("GET", "PUT"):
            raise ApiError(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
            )
        if method == "PUT":
            if body.get("kind") != "Scale":
                raise ApiError(
                    400, "BadRequest", f'the body kind must be Scale, got "{body.get("kind")}"'
                )
            self._check_version(res, key, obj, body)
            replicas = (body.get("spec") or {}).get("replicas")
            if not isinstance(replicas, int) or replicas < 0:
                raise ApiError(
                    422,
                    "Invalid",
                    f'Scale.autoscaling "{key[3]}" is invalid: spec.replicas: Invalid value',
                )
            obj["spec"]["replicas"] = replicas
            obj.setdefault("status", {})["replicas"] = replicas  # an instant controller
            api.touch(obj)
        meta = obj["metadata"]
        selector = obj.get("status", {}).get("selector")
        if selector is None:
            labels = ((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
            selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        return 200, {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
                "resourceVersion": meta["resourceVersion"],
                "creationTimestamp": meta["creationTimestamp"],
            },
            "spec": {"replicas": obj["spec"].get("replicas", 0)},
            "status": {"replicas": obj.get("status", {}).get("replicas", 0), "selector": selector},
        }

    # -- watch ---------------------------------------------------------------------------

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _send_event(self, kind: str, obj: dict[str, Any], res: Resource) -> None:
        if self._as_table() and kind in ("ADDED", "MODIFIED", "DELETED"):
            api = self.server.api
            include = _first(self.query, "includeObject") or "Metadata"
            obj = table(res, [obj], obj["metadata"]["resourceVersion"], include)
            del api  # Tables carry the object's own resourceVersion
        self._chunk(json.dumps({"type": kind, "object": obj}).encode() + b"\n")

    def _translate(
        self, res: Resource, change: Change, namespace: str | None
    ) -> tuple[str, dict[str, Any]] | None:
        if change.key[:2] != (res.prefix, res.plural):
            return None
        new = change.object
        if change.type != "MODIFIED":
            return (change.type, new) if self._selected(res, change.key, new, namespace) else None
        old = change.old if change.old is not None else new
        now_in = self._selected(res, change.key, new, namespace)
        was_in = self._selected(res, change.key, old, namespace)
        if now_in:
            return ("MODIFIED" if was_in else "ADDED", new)
        return ("DELETED", new) if was_in else None

    def _client_gone(self) -> bool:
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    def _watch(self, res: Resource, namespace: str | None) -> None:
        """Stream watch events until ``timeoutSeconds``, a cut, or the client leaves."""
        api = self.server.api
        since = _first(self.query, "resourceVersion")
        bookmarks = _first(self.query, "allowWatchBookmarks") in ("true", "1")
        seconds = float(_first(self.query, "timeoutSeconds") or api.default_watch_seconds)
        if since not in ("", "0") and not since.isdigit():
            raise ApiError(400, "BadRequest", f'invalid resource version "{since}"')
        with api.lock:
            cuts = api.cuts
            if since in ("", "0"):  # the current state first, as ADDED events
                initial = [
                    copy.deepcopy(o)
                    for k, o in sorted(api.objects.items())
                    if self._selected(res, k, o, namespace)
                ]
                last = api.revision
            else:
                initial, last = [], int(since)
            gone = last < api.compacted
            api.watching += 1
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Audit-Id", str(uuid.uuid4()))
            self.end_headers()
            if gone:
                message = f"too old resource version: {since} ({api.compacted})"
                self._chunk(
                    json.dumps(
                        {"type": "ERROR", "object": status_body(410, "Expired", message)}
                    ).encode()
                    + b"\n"
                )
                self._chunk(b"")
                return
            for obj in initial:
                self._send_event("ADDED", obj, res)
            deadline = time.monotonic() + seconds
            next_mark = time.monotonic() + api.bookmark_interval
            while True:
                with api.lock:
                    while True:
                        pending = api.changes_since(last)
                        if pending or api.cuts != cuts or api.closing:
                            break
                        until = min(deadline, next_mark) if bookmarks else deadline
                        wait = min(until - time.monotonic(), 1.0)
                        if wait <= 0:
                            break
                        api.changed.wait(wait)
                        if time.monotonic() >= deadline or self._client_gone():
                            break
                    cut, closing, current = api.cuts != cuts, api.closing, api.revision
                if cut:
                    self._chunk(_HALF_EVENT)
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if closing:
                    self._chunk(b"")
                    return
                for change in pending:
                    event = self._translate(res, change, namespace)
                    if event is not None:
                        self._send_event(*event, res)
                    last = change.revision
                if not pending:
                    last = max(last, current)
                moment = time.monotonic()
                if bookmarks and moment >= next_mark:
                    mark = {
                        "kind": res.kind,
                        "apiVersion": res.api_version,
                        "metadata": {"resourceVersion": str(last)},
                    }
                    self._chunk(json.dumps({"type": "BOOKMARK", "object": mark}).encode() + b"\n")
                    next_mark = moment + api.bookmark_interval
                if moment >= deadline:
                    self._chunk(b"")
                    return
                if self._client_gone():
                    self.close_connection = True
                    return
        except OSError:
            self.close_connection = True
        finally:
            with api.lock:
                api.watching -= 1
