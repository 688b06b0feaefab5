"""Coalesced reads for the kafka scalers of one cluster, built on kafka-python.

Every :class:`~eventscale.scalers.kafka.scaler.KafkaScaler` whose connection settings are
equal shares one :class:`KafkaBatcher` (through the connection pool). Polls that arrive
within one *slot* (:data:`BATCH_WINDOW` after the first) are answered together:

1. without ``topic``: one OffsetFetch for every such group, to learn its topics;
2. one Metadata request for every topic of the slot (partitions and their leaders);
3. at once: one OffsetFetch for every group (OffsetFetch v8+, KIP-709; one request per
   group when the broker's ApiVersions says it is older) and one ListOffsets per
   partition leader (log end offsets, and log start offsets for the scalers whose
   settings need them), all sent together.

The requests are kafka-python's own classes sent through its connections
(:class:`~._kafka_python.Transport`); the two large answers are read by the lean
decoders of :mod:`~._wire` into dictionaries of ints. Each poll gets its own answer or
its own error: the answers carry error codes per group, topic and partition, and each
fails only the queries that use that group or topic. A connection failure or a timeout
fails the queries whose request it stopped. Nothing here computes lag: the scaler
applies the pure maths of ``_lag`` to its own answer.

kafka-python is blocking (it runs its own I/O thread), so a slot runs in a worker thread
of this module and wakes its waiters through an anyio token; every waiter waits under its
own timeout, so a hanging slot delays nobody past that. docs/scalers/kafka.md says why
kafka-python (and not confluent-kafka, aiokafka or hand-written protocol code) and which
settings it serves; the others keep the librdkafka path.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import itertools
import logging
import ssl
import threading
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any, Final

import anyio
import anyio.from_thread
import anyio.lowlevel
import attrs

import eventscale.scalers.kafka._kafka_python as kp
from eventscale._optional import import_optional
from eventscale.errors import ScalerError, ScalerTimeout
from eventscale.redaction import Secret, redact_text
from eventscale.scalers.kafka._lag import INVALID_OFFSET, TopicPartition, select_partitions

__all__ = (
    "BATCH_WINDOW",
    "KafkaBatcher",
    "LagInputs",
    "LagQuery",
    "batchable",
)

_LOG: Final = logging.getLogger("eventscale.scalers.kafka")

#: How long a slot stays open after its first poll, in seconds: polls started in the same
#: controller slot reach the scaler within a few event-loop turns of each other.
BATCH_WINDOW: Final = 0.002

# librdkafka settings (as KafkaMetadata builds them) that the batch path understands;
# a connection with any other setting (Kerberos, OAUTHBEARER, MSK IAM) keeps librdkafka.
_KNOWN: Final = frozenset(
    {
        "bootstrap.servers",
        "security.protocol",
        "sasl.mechanism",
        "sasl.username",
        "sasl.password",
        "ssl.ca.pem",
        "ssl.certificate.pem",
        "ssl.key.pem",
        "ssl.key.password",
        "enable.ssl.certificate.verification",
        "ssl.endpoint.identification.algorithm",
    }
)
_MECHANISMS: Final = frozenset({"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"})
_PROTOCOLS: Final = frozenset({"PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"})
_LATEST: Final = -1  # ListOffsets timestamps
_EARLIEST: Final = -2
_SLACK: Final = 5.0  # seconds past the request timeout before a slot's worker gives up
_CLIENT_IDS: Final = itertools.count(1)
_ROLES: Final = ("offsets", "groups")  # the two clients of a batcher (see __init__)


def batchable(settings: Mapping[str, Any]) -> bool:
    """Whether the batch path can connect with these librdkafka ``settings`` (and
    kafka-python 3 is installed: without it every scaler keeps the librdkafka path)."""
    if not kp.available():
        return False
    if any(key not in _KNOWN for key in settings):
        return False
    mechanism = settings.get("sasl.mechanism")
    if mechanism is not None and mechanism not in _MECHANISMS:
        return False
    return str(settings.get("security.protocol", "PLAINTEXT")) in _PROTOCOLS


@attrs.frozen
class LagQuery:
    """What one poll needs: a group, its topic (``None``: the topics it committed to)."""

    group: str
    topic: str | None
    limitation: Sequence[int] | None
    earliest: bool  # also read log start offsets (offsetResetPolicy earliest)
    timeout: float


@attrs.frozen
class LagInputs:
    """One poll's answer, in the shapes
    :func:`~eventscale.scalers.kafka._lag.compute_lag_by_topic` takes.

    The mappings may be shared with the other polls of the slot (one decoded answer read
    by every scaler of a group or topic): read-only.
    """

    #: topic -> partition -> committed offset (:data:`INVALID_OFFSET`: no commit)
    committed: Mapping[str, Mapping[int, int]]
    #: topic -> partition -> log end offset
    latest: Mapping[str, Mapping[int, int]]
    #: Log start offsets of the partitions without a commit; ``None`` when that read
    #: failed (the lag then falls back to the log end offset, as on the librdkafka path).
    earliest: Mapping[TopicPartition, int] | None


@attrs.frozen
class _Failure:
    message: str
    transient: bool = True
    timeout: bool = False

    def error(self) -> ScalerError:
        cls = ScalerTimeout if self.timeout else ScalerError
        return cls(self.message, transient=self.transient)


_Answer = LagInputs | _Failure
_Offsets = dict[str, dict[int, int]]  # topic -> partition -> committed offset
_WHAT: Final = {-1: "list log end offsets", -2: "list log start offsets"}
_NONE: Final[Mapping[int, int]] = {}


def _commit(offset: int) -> int:
    """A committed offset as the lag maths reads it (every negative is "no commit")."""
    return offset if offset >= 0 else INVALID_OFFSET


class _Slot:
    __slots__ = ("answers", "done", "queries", "token")

    def __init__(self, token: anyio.lowlevel.EventLoopToken) -> None:
        self.token = token
        self.queries: list[LagQuery] = []
        self.answers: list[_Answer] = []
        self.done = anyio.Event()


class KafkaBatcher:
    """The batch path of one cluster connection (see the module docstring).

    ``api_version`` pins the broker version kafka-python assumes (tests use it to make
    kafka-python believe the broker predates multi-group OffsetFetch).
    """

    def __init__(
        self,
        settings: Mapping[str, Any],
        *,
        window: float = BATCH_WINDOW,
        api_version: tuple[int, ...] | None = None,
    ) -> None:
        self._settings = dict(settings)
        self._secrets = [v for v in settings.values() if isinstance(v, Secret)]
        self._window = window
        self._api_version = api_version
        # Two kafka-python clients, so two connections: a broker answers the requests of
        # one connection in order, and the OffsetFetch of a whole slot is the slow one;
        # on its own connection the metadata and ListOffsets requests pass it.
        self._admins: dict[str, Any] = {}
        self._admin_lock = threading.Lock()
        self._open: _Slot | None = None
        self._closed = False
        # slots (each sleeps its window, then waits for its requests) and the
        # concurrent requests of one slot run in separate pools: no slot starves its own.
        self._slots = concurrent.futures.ThreadPoolExecutor(4, "eventscale-kafka-slot")
        self._io = concurrent.futures.ThreadPoolExecutor(8, "eventscale-kafka-io")
        kp.LOG_FILTER.secrets[id(self)] = self._secrets
        self._client_id = f"eventscale-{next(_CLIENT_IDS)}"
        for role in _ROLES:
            kp.LOG_FILTER.refusals[f"kafka-io-{self._client_id}-{role}"] = self._on_refusal
        #: The last login refusal kafka-python logged (error name, text), cleared by a
        #: slot that reached the cluster.
        self.refused: tuple[str, str] | None = None
        self.slots_run = 0  # how many slots were sent (tests and benchmarks read it)

    @property
    def servers(self) -> str:
        """``bootstrap servers ...`` for messages, with secrets redacted."""
        return "bootstrap servers " + redact_text(
            str(self._settings.get("bootstrap.servers", "")), self._secrets
        )

    async def read(self, query: LagQuery) -> LagInputs:
        """Join the open slot (or open one) and wait for this query's answer.

        :raises ScalerError: this query failed (:class:`ScalerTimeout` past its timeout).
        """
        if self._closed:
            raise ScalerError("the kafka connection is closed", transient=False)
        slot = self._open
        if slot is None:
            slot = self._open = _Slot(anyio.lowlevel.current_token())
            self._slots.submit(self._run, slot)
        slot.queries.append(query)
        index = len(slot.queries) - 1
        try:
            with anyio.fail_after(query.timeout + 1.0):
                await slot.done.wait()
        except TimeoutError as exc:
            raise ScalerTimeout(
                f"could not read the offsets of group {query.group!r} within "
                f"{query.timeout:g}s ({self.servers})"
            ) from exc
        answer = slot.answers[index]
        if isinstance(answer, _Failure):
            raise answer.error()
        return answer

    def _on_refusal(self, name: str, text: str) -> None:
        self.refused = (name, text)

    def api_versions(self) -> dict[str, tuple[int, int]]:
        """The request versions the broker announced (``{"OffsetFetch": (0, 9), ...}``),
        empty before the first slot connected."""
        admin = self._admins.get("offsets")
        if admin is None:
            return {}
        return {key.name: (int(lo), int(hi)) for key, (lo, hi) in admin.api_versions().items()}

    def close(self) -> None:
        """Close the kafka-python client and the worker pools (blocks briefly)."""
        self._closed = True
        kp.LOG_FILTER.secrets.pop(id(self), None)
        for role in _ROLES:
            kp.LOG_FILTER.refusals.pop(f"kafka-io-{self._client_id}-{role}", None)
        self._slots.shutdown(wait=False, cancel_futures=True)
        self._io.shutdown(wait=False, cancel_futures=True)
        with self._admin_lock:
            admins = list(self._admins.values())
            self._admins.clear()
        for admin in admins:
            with contextlib.suppress(Exception):
                admin.close()

    # -- one slot, in a worker thread -------------------------------------------------

    def _take(self, slot: _Slot) -> None:
        if self._open is slot:
            self._open = None

    def _run(self, slot: _Slot) -> None:
        time.sleep(self._window)
        try:
            # on the event loop: no query joins this slot after this returns
            anyio.from_thread.run_sync(self._take, slot, token=slot.token)
        except Exception:  # the event loop is gone
            return
        queries = list(slot.queries)
        try:
            answers = self._answer(queries)
            if any(isinstance(a, LagInputs) for a in answers):
                self.refused = None
        except Exception as exc:  # a bug must not leave the waiters waiting
            message = f"could not read the offsets: {type(exc).__name__}: {exc} ({self.servers})"
            answers = [_Failure(redact_text(message, self._secrets))] * len(queries)
        slot.answers = answers
        self.slots_run += 1
        with contextlib.suppress(Exception):
            anyio.from_thread.run_sync(slot.done.set, token=slot.token)

    def _client(self, role: str, timeout: float) -> Any:
        with self._admin_lock:
            if self._closed:  # a slot that outlived close() must not make a client
                raise ScalerError("the kafka connection is closed", transient=False)
            admin = self._admins.get(role)
            if admin is None:
                # importing kafka-python takes most of a second: here, in the slot's
                # worker thread, never on the event loop
                kp.import_kafka_python()
                admin_module = import_optional("kafka.admin", extra="kafka", what="kafka batching")
                admin = self._admins[role] = admin_module.KafkaAdminClient(
                    **kp.client_config(
                        self._settings,
                        client_id=f"{self._client_id}-{role}",
                        timeout=timeout,
                        api_version=self._api_version,
                    )
                )
            return admin

    def _answer(self, queries: Sequence[LagQuery]) -> list[_Answer]:
        limit = max(q.timeout for q in queries)
        try:
            admin, groups_admin = (self._client(role, limit) for role in _ROLES)
        except Exception as exc:
            return [self._failure(exc, "connect to the cluster")] * len(queries)
        return self._answer_with(kp.Transport(admin, groups_admin), queries)

    def _answer_with(self, transport: Any, queries: Sequence[LagQuery]) -> list[_Answer]:
        """Every query's answer through ``transport`` (a :class:`~._kafka_python.Transport`
        or a stand-in with its three methods)."""
        out: dict[int, _Answer] = {}

        # 1. the topics of each query (groups without `topic`: what they committed to)
        discovery = {q.group: None for q in queries if q.topic is None}
        discovered = self._group_offsets(transport, discovery) if discovery else {}
        topics_of: dict[int, list[str]] = {}
        for i, q in enumerate(queries):
            if q.topic is not None:
                topics_of[i] = [q.topic]
                continue
            got = discovered[q.group]
            if isinstance(got, _Failure):
                out[i] = got
            elif not any(got.values()):
                out[i] = _Failure(
                    f"consumer group {q.group!r} has no committed offsets, so its topics are "
                    "unknown; set `topic` (eventscale never scans every topic of the cluster)"
                )
            else:
                topics_of[i] = sorted(t for t, ps in got.items() if ps)

        # 2. the partitions (and their leaders) of every topic of the slot: one request
        names = sorted({t for ts in topics_of.values() for t in ts})
        described = self._describe(transport, names) if names else {}
        wanted: dict[int, dict[str, list[int]]] = {}
        for i, ts in topics_of.items():
            by_topic: dict[str, list[int]] = {}
            for topic in ts:
                leaders = described[topic]
                if isinstance(leaders, _Failure):
                    out[i] = leaders
                    break
                try:
                    selected = select_partitions(topic, sorted(leaders), queries[i].limitation)
                except ScalerError as exc:
                    out[i] = _Failure(exc.message, exc.transient)
                    break
                by_topic[topic] = list(selected)
            else:
                wanted[i] = by_topic

        # 3. committed offsets (one OffsetFetch) and log end / start offsets (one
        # ListOffsets per leader and kind), concurrently
        specs: dict[str, dict[str, set[int]]] = defaultdict(lambda: defaultdict(set))
        kinds: dict[int, dict[str, set[int]]] = {_LATEST: defaultdict(set)}
        for i, by_topic in wanted.items():
            q = queries[i]
            for topic, ps in by_topic.items():
                if q.topic is not None:
                    specs[q.group][topic].update(ps)
                kinds[_LATEST][topic].update(ps)
                if q.earliest:
                    kinds.setdefault(_EARLIEST, defaultdict(set))[topic].update(ps)
        committed_future = (
            self._io.submit(
                self._group_offsets,
                transport,
                {
                    g: {t: sorted(ps) for t, ps in sorted(by.items())}
                    for g, by in sorted(specs.items())
                },
            )
            if specs
            else None
        )
        listed = self._offsets(transport, kinds, described) if wanted else {}
        limit = max(q.timeout for q in queries)
        committed = committed_future.result(limit + _SLACK) if committed_future else {}
        latest, earliest = listed.get(_LATEST, {}), listed.get(_EARLIEST, {})

        for i, by_topic in wanted.items():
            out[i] = self._assemble(queries[i], by_topic, discovered, committed, latest, earliest)
        return [out[i] for i in range(len(queries))]

    def _assemble(
        self,
        q: LagQuery,
        by_topic: Mapping[str, Sequence[int]],
        discovered: Mapping[str, _Offsets | _Failure],
        committed: Mapping[str, _Offsets | _Failure],
        latest: Mapping[str, Mapping[int, int] | _Failure],
        earliest: Mapping[str, Mapping[int, int] | _Failure],
    ) -> _Answer:
        group_offsets = (discovered if q.topic is None else committed)[q.group]
        if isinstance(group_offsets, _Failure):
            return group_offsets
        mine: dict[str, Mapping[int, int]] = {}
        ends: dict[str, Mapping[int, int]] = {}
        for topic, ps in by_topic.items():
            listed = latest[topic]
            if isinstance(listed, _Failure):
                return listed
            offsets = group_offsets.get(topic, _NONE)
            wanted = set(ps)
            # The common case: the answers hold exactly the wanted partitions (and every
            # commit is an offset or Kafka's -1), so the decoded dictionaries serve as
            # they are, shared with the other polls; no object per partition.
            if offsets.keys() == wanted and min(offsets.values(), default=0) >= INVALID_OFFSET:
                mine[topic] = offsets
            elif q.topic is None:  # what the group never committed counts as no commit
                mine[topic] = {p: _commit(offsets.get(p, INVALID_OFFSET)) for p in ps}
            else:  # a partition without an answer stays missing: compute_lag says so
                mine[topic] = {p: _commit(offsets[p]) for p in ps if p in offsets}
            if listed.keys() == wanted:
                ends[topic] = listed
            else:
                found = {p: listed[p] for p in ps if p in listed}
                if found:
                    ends[topic] = found
        starts: dict[TopicPartition, int] | None = None
        if q.earliest:
            starts = {}
            for topic, commits in mine.items():
                if INVALID_OFFSET not in commits.values():
                    continue
                starting = earliest.get(topic, _NONE)
                for p, offset in commits.items():
                    if offset != INVALID_OFFSET:
                        continue
                    if isinstance(starting, _Failure) or p not in starting:
                        _LOG.warning(
                            "kafka group %r: log start offsets unavailable, using log end",
                            q.group,
                        )
                        return LagInputs(committed=mine, latest=ends, earliest=None)
                    starts[(topic, p)] = starting[p]
        return LagInputs(committed=mine, latest=ends, earliest=starts)

    # -- the requests, each returning per group or per topic answers ---------------------

    def _group_offsets(
        self, transport: Any, specs: Mapping[str, Mapping[str, Sequence[int]] | None]
    ) -> dict[str, _Offsets | _Failure]:
        errors = import_optional("kafka.errors", extra="kafka", what="kafka batching")
        try:
            got = transport.group_offsets(specs)
        except Exception as exc:
            if len(specs) > 1 and _names_one(exc):  # e.g. a coordinator lookup refused
                out: dict[str, _Offsets | _Failure] = {}
                for group in specs:
                    out.update(self._group_offsets(transport, {group: specs[group]}))
                return out
            return {
                g: self._failure(exc, f"read the committed offsets of group {g!r}") for g in specs
            }
        answers: dict[str, _Offsets | _Failure] = {}
        for group in specs:
            what = f"read the committed offsets of group {group!r}"
            answer = got.get(group)
            if answer is None:
                answers[group] = _Failure(
                    f"no committed-offsets answer for group {group!r} ({self.servers})"
                )
            elif isinstance(answer, BaseException):
                answers[group] = self._failure(answer, what)
            elif answer[0]:
                answers[group] = self._failure(errors.for_code(answer[0])(), what)
            else:
                answers[group] = self._checked(answer[1], what)
        return answers

    def _checked(self, topics: Mapping[str, Any], what: str) -> _Offsets | _Failure:
        """The offsets of one group's topics, or the failure of its first partition error."""
        errors = import_optional("kafka.errors", extra="kafka", what="kafka batching")
        for topic in sorted(topics):
            bad = topics[topic].errors
            if bad:
                p = min(bad)
                return self._failure(
                    errors.for_code(bad[p])(f"topic {topic!r} partition {p}"), what
                )
        return {t: found.offsets for t, found in topics.items()}

    def _offsets(
        self,
        transport: Any,
        kinds: Mapping[int, Mapping[str, set[int]]],
        described: Mapping[str, dict[int, int] | _Failure],
    ) -> dict[int, dict[str, dict[int, int] | _Failure]]:
        """kind (log end or log start) -> topic -> partition -> offset, from one ListOffsets
        per leader and kind, all sent at once; a failure fails only its topics."""
        errors = import_optional("kafka.errors", extra="kafka", what="kafka batching")
        result: dict[int, dict[str, dict[int, int] | _Failure]] = {k: {} for k in kinds}
        plan: list[tuple[int, int, dict[str, list[int]]]] = []
        for kind, by_topic in kinds.items():
            what = _WHAT[kind]
            by_leader: dict[int, dict[str, list[int]]] = defaultdict(dict)
            for topic, ps in sorted(by_topic.items()):
                leaders = described[topic]
                assert not isinstance(leaders, _Failure)  # such topics stopped at step 2
                leaderless = sorted(p for p in ps if leaders.get(p, -1) < 0)
                if leaderless:
                    result[kind][topic] = _Failure(
                        f"could not {what} of {topic!r}: partition {leaderless[0]} has no "
                        f"leader ({self.servers})"
                    )
                    continue
                for p in sorted(ps):
                    by_leader[leaders[p]].setdefault(topic, []).append(p)
            plan.extend((leader, kind, topics) for leader, topics in by_leader.items())
        try:
            answers = transport.list_offsets(plan)
        except Exception as exc:
            answers = [exc] * len(plan)
        for (_, kind, topics), answer in zip(plan, answers, strict=True):
            what = _WHAT[kind]
            mine = result[kind]
            for topic in topics:
                if isinstance(mine.get(topic), _Failure):
                    continue
                if isinstance(answer, BaseException):
                    mine[topic] = self._failure(answer, f"{what} of {topic!r}")
                    continue
                found = answer.topics.get(topic)
                if found is None:
                    mine[topic] = _Failure(
                        f"no answer listing the offsets of topic {topic!r} ({self.servers})"
                    )
                elif found.errors:
                    p = min(found.errors)
                    refusal = errors.for_code(found.errors[p])(f"partition {p}")
                    mine[topic] = self._failure(refusal, f"{what} of {topic!r}")
                else:
                    offsets = mine.setdefault(topic, {})
                    assert not isinstance(offsets, _Failure)
                    offsets.update(found.offsets)
        return result

    def _describe(
        self, transport: Any, topics: Sequence[str]
    ) -> dict[str, dict[int, int] | _Failure]:
        """topic -> partition -> leader, from one Metadata request."""
        errors = import_optional("kafka.errors", extra="kafka", what="kafka batching")
        try:
            described = transport.metadata(list(topics))
        except Exception as exc:
            return {t: self._failure(exc, f"describe topic {t!r}") for t in topics}
        out: dict[str, dict[int, int] | _Failure] = {}
        for topic in topics:
            d = described.get(topic)
            if d is None:
                out[topic] = _Failure(f"no metadata answer for topic {topic!r} ({self.servers})")
            elif d[0]:
                out[topic] = self._failure(errors.for_code(d[0])(), f"describe topic {topic!r}")
            else:
                out[topic] = d[1]
        return out

    def _failure(self, exc: BaseException, what: str) -> _Failure:
        errors = import_optional("kafka.errors", extra="kafka", what="kafka batching")
        name = type(exc).__name__
        if isinstance(exc, errors.UnknownTopicOrPartitionError):
            message = f"could not {what}: the topic does not exist ({name}, {self.servers})"
            return _Failure(redact_text(message, self._secrets), transient=False)
        text = str(exc)
        refused = self.refused
        if refused is not None and not isinstance(exc, errors.BrokerResponseError):
            # kafka-python reports a refused login as a timeout or a lost connection
            message = (
                f"could not {what}: the brokers refused authentication: {refused[0]}: "
                f"{refused[1]} ({self.servers})"
            )
            return _Failure(redact_text(message, self._secrets), transient=False)
        message = redact_text(f"could not {what}: {name}: {text} ({self.servers})", self._secrets)
        timeout = isinstance(
            exc, (errors.KafkaTimeoutError, errors.RequestTimedOutError, TimeoutError)
        )
        denied = isinstance(
            exc,
            (
                errors.AuthorizationError,
                errors.SaslAuthenticationFailedError,
                errors.UnsupportedSaslMechanismError,
                errors.InvalidGroupIdError,
                errors.UnsupportedVersionError,
                errors.KafkaConfigurationError,
                ssl.SSLError,
            ),
        )
        return _Failure(message, transient=not denied, timeout=timeout and not denied)


def _names_one(exc: BaseException) -> bool:
    """Whether ``exc`` is a broker's answer about one group or topic (so asking for each
    separately isolates it) rather than a connection failure or timeout."""
    errors = import_optional("kafka.errors", extra="kafka", what="kafka batching")
    return isinstance(exc, errors.BrokerResponseError) and not isinstance(
        exc, (errors.RequestTimedOutError, errors.KafkaTimeoutError, errors.NetworkExceptionError)
    )
