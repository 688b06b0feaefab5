"""What the batch path needs from kafka-python, and two fixes to it.

* :func:`client_config`: librdkafka settings (as ``KafkaMetadata`` builds them) to
  ``KafkaAdminClient`` arguments, TLS from PEM text (:func:`ssl_context`).
* :data:`LOG_FILTER`: takes secrets out of kafka-python's log lines and notices refused
  logins, which kafka-python only logs (it then reports a timeout).
* :func:`import_kafka_python`: imports it on the caller's thread and installs two narrow
  wrappers for kafka-python 3.0 bugs met against real brokers: a failed connection
  attempt leaves its socket open, and a SCRAM ``server-error`` (RFC 5802) is misread.
* :class:`Transport`: a slot's requests (Metadata, OffsetFetch, ListOffsets) sent through
  a ``KafkaAdminClient``'s connections, all of one step at once on its I/O thread, written
  and read by :mod:`~eventscale.scalers.kafka._wire` (see :func:`lean_request`).
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
import ssl
import struct
import tempfile
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import eventscale.scalers.kafka._wire as wire
from eventscale._optional import import_optional
from eventscale.redaction import Secret, redact_text

__all__ = (
    "LOG_FILTER",
    "MAX_RESPONSE_BYTES",
    "REFUSALS",
    "GroupAnswer",
    "Transport",
    "available",
    "client_config",
    "import_kafka_python",
    "lean_request",
    "reveal",
    "ssl_context",
)

#: The largest answer the batch path accepts from a broker (kafka-python's default: 100 MB).
MAX_RESPONSE_BYTES: Final = 32 * 1024 * 1024

#: kafka-python errors that mean the cluster refused this client (login or rights).
REFUSALS: Final = frozenset(
    {
        "SaslAuthenticationFailedError",
        "UnsupportedSaslMechanismError",
        "IllegalSaslStateError",
        "TopicAuthorizationFailedError",
        "GroupAuthorizationFailedError",
        "ClusterAuthorizationFailedError",
    }
)


class _KafkaLogFilter(logging.Filter):
    """Reads kafka-python's log lines for two things.

    * Secrets: kafka-python logs its configuration, SASL password included, at DEBUG when
      a client starts; registered secrets are taken out of every line.
    * Refused logins: kafka-python retries a refused SASL login until its bootstrap or
      request timeout and then reports a timeout; the refusal itself appears only in its
      log lines (as the error object), logged on the client's I/O thread
      (``kafka-io-<client_id>``). The client owning that thread is told.
    """

    def __init__(self) -> None:
        super().__init__()
        self.secrets: dict[int, list[Secret]] = {}
        #: I/O thread name -> what to call with (error name, text) on a refused login
        self.refusals: dict[str, Callable[[str, str], None]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = [s for group in list(self.secrets.values()) for s in group]
        if secrets:
            message = record.getMessage()
            redacted = redact_text(message, secrets)
            if redacted != message:
                record.msg, record.args = redacted, ()
        watcher = self.refusals.get(record.threadName or "")
        if watcher is not None and isinstance(record.args, tuple):
            for arg in record.args:
                if isinstance(arg, Exception) and type(arg).__name__ in REFUSALS:
                    watcher(type(arg).__name__, str(arg))
        return True


LOG_FILTER: Final = _KafkaLogFilter()
for _name in ("kafka.admin.client", "kafka.net.manager", "kafka.net.connection"):
    logging.getLogger(_name).addFilter(LOG_FILTER)


def client_config(
    settings: Mapping[str, Any],
    *,
    client_id: str,
    timeout: float,
    api_version: tuple[int, ...] | None = None,
) -> dict[str, Any]:
    """``KafkaAdminClient`` keyword arguments for librdkafka ``settings`` (secrets revealed:
    the result goes to the client only)."""
    s = settings
    ms = max(int(timeout * 1000), 100)
    conf: dict[str, Any] = {
        "bootstrap_servers": str(s["bootstrap.servers"]).split(","),
        "client_id": client_id,
        "security_protocol": str(s.get("security.protocol", "PLAINTEXT")),
        "request_timeout_ms": ms,
        "bootstrap_timeout_ms": ms,
        "reconnect_backoff_max_ms": 1000,
        # every answer is bounded: 10 groups x 1,000 partitions is about 200 KB
        "receive_message_max_bytes": MAX_RESPONSE_BYTES,
    }
    if api_version is not None:
        conf["api_version"] = api_version
    mechanism = s.get("sasl.mechanism")
    if mechanism is not None:
        conf["sasl_mechanism"] = str(mechanism)
        conf["sasl_plain_username"] = reveal(s.get("sasl.username")) or ""
        conf["sasl_plain_password"] = reveal(s.get("sasl.password")) or ""
    if conf["security_protocol"] in ("SSL", "SASL_SSL"):
        conf["ssl_context"] = ssl_context(s)
        conf["ssl_check_hostname"] = conf["ssl_context"].check_hostname
    return conf


@functools.cache
def available() -> bool:
    """Whether kafka-python 3 is installed (read from its metadata: nothing is imported)."""
    try:
        version = importlib.metadata.version("kafka-python")
    except importlib.metadata.PackageNotFoundError:
        return False
    major = version.split(".", 1)[0]
    return major.isdigit() and int(major) >= 3


def import_kafka_python() -> None:
    """Import kafka-python's client now, on the caller's thread.

    Its protocol classes read their JSON schemas with ``importlib.resources.read_text``
    when they are defined, which Python 3.11+ flags as deprecated: under ``-W error`` that
    would turn into a failed poll, so the warning is ignored for this import only.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="(read|open)_text is deprecated", category=DeprecationWarning
        )
        for name in ("kafka", "kafka.admin", "kafka.errors"):
            import_optional(name, extra="kafka", what="kafka batching")
    _close_failed_sockets()
    _read_scram_server_errors()


def _read_scram_server_errors() -> None:
    """Make kafka-python read a SCRAM ``server-error``.

    RFC 5802 lets the server's final message be ``e=<reason>`` instead of its signature;
    kafka-python 3.0 looks only for the signature and fails with ``KeyError('v')``, which
    hides a refused login. The wrapper raises kafka-python's own
    ``SaslAuthenticationFailedError`` for it; it is installed once.
    """
    scram = import_optional("kafka.net.sasl.scram", extra="kafka", what="kafka batching")
    errors = import_optional("kafka.errors", extra="kafka", what="kafka batching")
    cls = scram.ScramClient
    if getattr(cls, "_eventscale_reads_errors", False):
        return
    original = cls.process_server_final_message

    def process_server_final_message(self: Any, message: bytes) -> Any:
        text = bytes(message[:256]).decode("utf-8", "replace")
        if text.startswith("e="):
            reason = text[2:].split(",", 1)[0]
            raise errors.SaslAuthenticationFailedError(
                f"SASL/SCRAM login refused by the server: {reason}"
            )
        return original(self, message)

    cls.process_server_final_message = process_server_final_message
    cls._eventscale_reads_errors = True


def _close_failed_sockets() -> None:
    """Close the socket of a failed connection attempt.

    kafka-python 3.0 leaves it to the garbage collector (``KafkaNetSocket.sock_connect``
    raises without closing it): while a broker is down that is one open descriptor per
    reconnect attempt until a collection, and a ResourceWarning for each. The wrapper
    closes it and re-raises; it is installed once.
    """
    inet = import_optional("kafka.net.inet", extra="kafka", what="kafka batching")
    cls = inet.KafkaNetSocket
    if getattr(cls, "_eventscale_closes_failed", False):
        return
    original = cls.sock_connect

    async def sock_connect(self: Any, net: Any, sock: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await original(self, net, sock, *args, **kwargs)
        except BaseException:
            sock.close()
            raise

    cls.sock_connect = sock_connect
    cls._eventscale_closes_failed = True


def reveal(value: object) -> str | None:
    """The plain text of a setting (a :class:`Secret` revealed)."""
    if value is None:
        return None
    return value.reveal() if isinstance(value, Secret) else str(value)


def ssl_context(settings: Mapping[str, Any]) -> ssl.SSLContext:
    """The TLS context of the connection, from the PEM texts KafkaMetadata carries."""
    ca = reveal(settings.get("ssl.ca.pem"))
    context = ssl.create_default_context(cadata=ca) if ca else ssl.create_default_context()
    if str(settings.get("enable.ssl.certificate.verification", "true")) == "false":
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    cert = reveal(settings.get("ssl.certificate.pem"))
    key = reveal(settings.get("ssl.key.pem"))
    if cert and key:
        # load_cert_chain reads files: write them into a private directory, load, delete
        with tempfile.TemporaryDirectory(prefix="eventscale-kafka-tls-") as tmp:
            cert_path, key_path = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
            for path, text in ((cert_path, cert), (key_path, key)):
                path.touch(mode=0o600)
                path.write_text(text)
            password = reveal(settings.get("ssl.key.password"))
            context.load_cert_chain(cert_path, key_path, password=password)
    return context


# -- the slot's requests ---------------------------------------------------------------------

#: One group's OffsetFetch answer: (group error code, topic -> offsets), or the exception
#: that stopped its request (connection, timeout, coordinator lookup).
GroupAnswer = tuple[int, dict[str, "wire.TopicOffsets"]] | BaseException


class _LeanDecoder:
    """Stands where kafka-python expects a response class: the header is parsed by
    kafka-python's own class, the body by a :mod:`_wire` decoder."""

    __slots__ = ("decode_body", "real", "version")

    def __init__(self, real: Any, version: int, decode_body: Callable[[bytes, int], Any]) -> None:
        self.real, self.version, self.decode_body = real, version, decode_body

    def parse_header(self, buffer: Any) -> Any:
        return self.real.parse_header(buffer)

    def decode(self, buffer: Any) -> Any:
        return self.decode_body(buffer.read(), self.version)


@functools.cache
def _lean_classes() -> dict[str, Any]:
    """Request classes written and read by :mod:`_wire`.

    Each is a subclass of kafka-python's own request class (same API key, versions and
    header, so kafka-python negotiates the version and frames it as usual) that holds no
    fields: its body is written by a :mod:`_wire` encoder for the version kafka-python
    picked, and its header names the :mod:`_wire` decoder of the answer. kafka-python looks
    the response class up through the request's header, so only requests made here are
    decoded this way and kafka-python's global registry of response classes is left alone.
    """
    consumer = import_optional("kafka.protocol.consumer", extra="kafka", what="kafka batching")
    headers = import_optional("kafka.protocol.api_header", extra="kafka", what="kafka batching")
    md = import_optional("kafka.protocol.metadata", extra="kafka", what="kafka batching")
    decoders = {
        "Metadata": (md.MetadataRequest, wire.decode_metadata, wire.METADATA_VERSIONS),
        "OffsetFetch": (
            consumer.OffsetFetchRequest,
            wire.decode_offset_fetch,
            wire.OFFSET_FETCH_VERSIONS,
        ),
        "ListOffsets": (
            consumer.ListOffsetsRequest,
            wire.decode_list_offsets,
            wire.LIST_OFFSETS_VERSIONS,
        ),
    }
    classes: dict[str, Any] = {}
    for name, (base, decode_body, (lo, hi)) in decoders.items():

        def get_response_class(
            self: Any, _decode: Any = decode_body, _lo: int = lo, _hi: int = hi
        ) -> Any:
            real = headers.RequestHeader.get_response_class(self)
            version = self.request_api_version
            if real is None or not _lo <= version <= _hi:
                return real
            return _LeanDecoder(real, version, _decode)

        header_cls = type(
            f"Lean{name}Header",
            (headers.RequestHeader,),
            {"get_response_class": get_response_class, "__module__": __name__},
            init=False,
        )

        def with_header(
            self: Any,
            correlation_id: int = 0,
            client_id: str = "kafka-python",
            _base: Any = base,
            _header: Any = header_cls,
        ) -> None:
            _base.with_header(self, correlation_id=correlation_id, client_id=client_id)
            plain = self.header
            self._header = _header(
                request_api_key=plain.request_api_key,
                request_api_version=plain.request_api_version,
                correlation_id=plain.correlation_id,
                client_id=plain.client_id,
            )

        classes[name] = type(
            f"Lean{name}Request",
            (base,),
            {
                "with_header": with_header,
                "encode": _lean_encode,
                "__repr__": _lean_repr,
                "__module__": __name__,
            },
            init=False,
        )
    return classes


def _lean_encode(
    self: Any, version: int | None = None, header: bool = False, framed: bool = False
) -> bytes:
    """kafka-python's ``encode`` for a lean request: its header, the :mod:`_wire` body."""
    if version is not None:
        self.API_VERSION = version
    version = self.API_VERSION
    if version is None:
        raise ValueError("Version required to encode data")
    body: bytes = self.lean_body(version)
    head: bytes = self.encode_header(flexible=self.flexible_version_q(version)) if header else b""
    size = len(head) + len(body)
    return (_FRAME.pack(size) if framed else b"") + head + body


def _lean_repr(self: Any) -> str:
    return f"{type(self).__name__}(v{self.API_VERSION}, {self.lean_what})"


_FRAME: Final = struct.Struct(">i")


def lean_request(
    name: str, body: Callable[[int], bytes], what: str, *, min_version: int, max_version: int
) -> Any:
    """A kafka-python request (``"Metadata"``, ``"OffsetFetch"`` or ``"ListOffsets"``)
    whose body is ``body(version)`` and whose answer is decoded by :mod:`_wire`; ``what``
    is its short description in kafka-python's debug log lines."""
    request = _lean_classes()[name](min_version=min_version, max_version=max_version)
    request.lean_body, request.lean_what = body, what
    return request


def _manager(admin: Any) -> Any:
    # kafka-python 3.0 has no public call that sends a request through an admin client;
    # its own admin methods go through this connection manager (send, run).
    manager = getattr(admin, "_manager", None)
    if manager is None or not hasattr(manager, "send") or not hasattr(manager, "run"):
        raise RuntimeError("this kafka-python has no connection manager on its admin client")
    return manager


class Transport:
    """A slot's requests through two admin clients: ``admin`` (Metadata, ListOffsets) and
    ``groups`` (OffsetFetch), each step's requests sent at once on the client's I/O
    thread. Each method blocks the calling thread until its answers are in."""

    def __init__(self, admin: Any, groups: Any) -> None:
        self.admin, self.groups = admin, groups

    def metadata(self, topics: Sequence[str]) -> dict[str, tuple[int, dict[int, int]]]:
        """topic -> (topic error code, partition -> leader id; ``-1``: no leader)."""
        return _manager(self.admin).run(self._metadata, topics)  # type: ignore[no-any-return]

    async def _metadata(self, topics: Sequence[str]) -> dict[str, tuple[int, dict[int, int]]]:
        names = list(topics)
        request = lean_request(
            "Metadata",
            functools.partial(_metadata_body, names),
            f"{len(names)} topics",
            min_version=wire.METADATA_VERSIONS[0],
            max_version=wire.METADATA_VERSIONS[1],
        )
        response = await _manager(self.admin).send(request)
        if not isinstance(response, wire.MetadataAnswer):  # the versions are bounded above
            raise TypeError(f"unexpected metadata answer {type(response).__name__}")
        return response.topics

    def group_offsets(
        self, specs: Mapping[str, Mapping[str, Sequence[int]] | None]
    ) -> dict[str, GroupAnswer]:
        """group -> its answer, for ``specs`` (group -> topic -> partitions; ``None``:
        every committed offset). One OffsetFetch per coordinator (v8+, KIP-709), or one
        per group when the broker is older.

        :raises Exception: kafka-python's error when the coordinators are not found.
        """
        return _manager(self.groups).run(self._group_offsets, specs)  # type: ignore[no-any-return]

    async def _group_offsets(
        self, specs: Mapping[str, Mapping[str, Sequence[int]] | None]
    ) -> dict[str, GroupAnswer]:
        consumer = import_optional("kafka.protocol.consumer", extra="kafka", what="kafka batching")
        manager = _manager(self.groups)
        coordinators = await self.groups._find_coordinator_ids(list(specs))
        cls = consumer.OffsetFetchRequest
        multi = _broker_max(self.groups, "OffsetFetch") >= wire.OFFSET_FETCH_VERSIONS[0]
        by_node: dict[int, list[str]] = defaultdict(list)
        for group in specs:
            by_node[coordinators[group]].append(group)
        sent: list[tuple[list[str], Any]] = []
        for node, groups in by_node.items():
            if multi:
                wanted = {g: specs[g] for g in groups}
                request = lean_request(
                    "OffsetFetch",
                    functools.partial(_fetch_body, wanted),
                    f"{len(groups)} groups",
                    min_version=wire.OFFSET_FETCH_VERSIONS[0],
                    max_version=wire.OFFSET_FETCH_VERSIONS[1],
                )
                sent.append((groups, _send(manager, request, node)))
                continue
            for g in groups:  # before KIP-709: one group per request
                request = cls(
                    group_id=g,
                    topics=_fetch_topics(cls.OffsetFetchRequestTopic, specs[g]),
                    min_version=0 if specs[g] is not None else 2,
                    max_version=7,
                )
                sent.append(([g], _send(manager, request, node)))
        out: dict[str, GroupAnswer] = {}
        for groups, future in sent:
            try:
                response = await _received(future)
            except Exception as exc:
                out.update((g, exc) for g in groups)
                continue
            if isinstance(response, wire.OffsetFetchAnswer):
                out.update((g, response.groups[g]) for g in groups if g in response.groups)
            else:
                out[groups[0]] = _old_group_answer(response)
        moved = [
            g
            for g, answer in out.items()
            if isinstance(answer, BaseException) or answer[0] in _COORDINATOR_MOVED
        ]
        if moved:
            self._forget_coordinators(moved)
        return out

    def _forget_coordinators(self, groups: Sequence[str]) -> None:
        """Drop the cached coordinator of ``groups`` (on the I/O thread).

        kafka-python 3.0 caches each group's coordinator and never drops an entry, so
        after a coordinator moved (or its broker went away) every later OffsetFetch would
        go to the old one. The groups whose request failed are looked up again by the
        next slot.
        """
        md = import_optional("kafka.protocol.metadata", extra="kafka", what="kafka batching")
        cluster = getattr(_manager(self.groups), "cluster", None)
        cache = getattr(cluster, "_coordinators", None)
        if isinstance(cache, dict):
            for group in groups:
                cache.pop((md.CoordinatorType.GROUP, group), None)

    def list_offsets(
        self, plan: Iterable[tuple[int, int, Mapping[str, Iterable[int]]]]
    ) -> list[wire.ListOffsetsAnswer | BaseException]:
        """One ListOffsets per ``(leader, timestamp, topic -> partitions)`` of ``plan``,
        all sent at once; the answers (or the errors) in the same order."""
        return _manager(self.admin).run(self._list_offsets, list(plan))  # type: ignore[no-any-return]

    async def _list_offsets(
        self, plan: Sequence[tuple[int, int, Mapping[str, Iterable[int]]]]
    ) -> list[wire.ListOffsetsAnswer | BaseException]:
        manager = _manager(self.admin)
        futures = []
        for leader, timestamp, topics in plan:
            wanted = {t: list(ps) for t, ps in topics.items()}
            request = lean_request(
                "ListOffsets",
                functools.partial(wire.encode_list_offsets, timestamp=timestamp, topics=wanted),
                f"{len(wanted)} topics, timestamp {timestamp}",
                min_version=wire.LIST_OFFSETS_VERSIONS[0],
                max_version=wire.LIST_OFFSETS_VERSIONS[1],
            )
            futures.append(_send(manager, request, leader))
        out: list[wire.ListOffsetsAnswer | BaseException] = []
        for future in futures:
            try:
                out.append(await _received(future))
            except Exception as exc:
                out.append(exc)
        return out


#: Group error codes that mean "ask someone else": COORDINATOR_LOAD_IN_PROGRESS,
#: COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR.
_COORDINATOR_MOVED: Final = frozenset({14, 15, 16})


def _send(manager: Any, request: Any, node: Any) -> Any:
    """kafka-python's future for ``request`` to ``node``, or the error that stopped it
    (an unknown broker id raises instead of failing the future)."""
    try:
        return manager.send(request, node_id=node)
    except Exception as exc:
        return exc


async def _received(future: Any) -> Any:
    if isinstance(future, BaseException):
        raise future
    return await future


def _broker_max(admin: Any, api: str) -> int:
    for key, (_, hi) in admin.api_versions().items():
        if key.name == api:
            return int(hi)
    return -1


def _metadata_body(topics: Sequence[str], version: int) -> bytes:
    return wire.encode_metadata(version, topics)


def _fetch_body(groups: Mapping[str, Mapping[str, Sequence[int]] | None], version: int) -> bytes:
    return wire.encode_offset_fetch(version, groups)


def _fetch_topics(cls: Any, spec: Mapping[str, Sequence[int]] | None) -> list[Any] | None:
    if spec is None:
        return None
    return [cls(name=t, partition_indexes=list(ps)) for t, ps in spec.items()]


def _old_group_answer(response: Any) -> GroupAnswer:
    """An OffsetFetch v0-v7 answer (kafka-python's objects) in the shape of v8+'s."""
    topics: dict[str, wire.TopicOffsets] = {}
    for topic in response.topics or ():
        found = topics.setdefault(str(topic.name), wire.TopicOffsets())
        for p in topic.partitions or ():
            found.offsets[int(p.partition_index)] = int(p.committed_offset)
            if p.error_code:
                found.errors[int(p.partition_index)] = int(p.error_code)
    return (int(getattr(response, "error_code", 0) or 0), topics)
