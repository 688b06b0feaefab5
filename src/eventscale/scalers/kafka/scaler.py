"""Kafka consumer-group lag (``type: kafka``), built on confluent-kafka (librdkafka).

The semantics follow KEDA's ``kafka`` scaler (``pkg/scalers/kafka_scaler.go``): per-partition
lag, the cap at the partition count, activity on the uncapped sum, ``partitionLimitation``,
``excludePersistentLag``. Where eventscale deliberately differs:

* ``earliest`` with no committed offset counts ``log end - log start`` (the newer upstream
  rule, KEDA PR #7937), not the whole log end offset, so records deleted by retention are
  not counted as lag.
* Without ``topic``, only the topics the group has committed offsets for are read; if the
  group has committed nothing at all that is an error, never a scan of every topic of the
  cluster (KEDA issue #8104).
* A missing topic, an unreachable cluster, a refused authorization or a timeout is a
  :class:`~eventscale.errors.ScalerError`, never a lag of 0.
* The ``excludePersistentLag`` memory lives as long as the scaler object; an error in another
  trigger of the same object does not reset it (KEDA rebuilds every scaler then).

Two paths read the offsets. The *batch path* (``_batch``, kafka-python) serves every
connection without Kerberos, OAUTHBEARER or MSK IAM: the scalers of one cluster polled in
the same slot share one metadata request, one OffsetFetch for all their groups and one
ListOffsets per partition leader. The *librdkafka path* (confluent-kafka) serves the
other connections, the ``apache-kafka`` trigger and scalers built with ``batch=False``:
one poll sends one metadata request, one committed-offsets request for the group and one
list-offsets request per partition leader, the last two concurrently. Either way the
request count does not grow with the partition count. Clients are shared through
:mod:`eventscale.scalers.kafka._pool`.
"""

from __future__ import annotations

import concurrent.futures
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import anyio
import anyio.to_thread

from eventscale._optional import import_optional
from eventscale.errors import ConfigError, ScalerError, ScalerTimeout
from eventscale.metrics import MetricSpec, ScalerReport
from eventscale.redaction import Secret, redact_text
from eventscale.scalers import ScalerBase
from eventscale.scalers.kafka._batch import KafkaBatcher, LagQuery, batchable
from eventscale.scalers.kafka._lag import (
    INVALID_OFFSET,
    LagTotals,
    TopicPartition,
    cap_total_lag,
    compute_lag,
    compute_lag_by_topic,
    select_partitions,
)
from eventscale.scalers.kafka._msk_iam import (
    AwsCredentials,
    CredentialSource,
    MskIamTokenProvider,
    valid_region,
)
from eventscale.scalers.kafka._pem import pem_problem
from eventscale.scalers.kafka._pool import (
    KERBEROS,
    POOL,
    Futures,
    KafkaClientPool,
    KafkaConnection,
    KerberosFiles,
    KerberosRegistry,
    librdkafka_has_gssapi,
)
from eventscale.scalers.kafka.config import KafkaMetadata, OffsetResetPolicy, SaslMechanism
from eventscale.scalers.params import TriggerContext

__all__ = ("KafkaScaler",)

_LOG: Final = logging.getLogger("eventscale.scalers.kafka")

# Imported with the module, so resolving the `kafka` trigger type without the extra
# installed raises MissingExtraError naming `eventscale[kafka]`.
_ck: Any = import_optional("confluent_kafka", extra="kafka", what="the kafka scaler")
_ck_admin: Any = import_optional("confluent_kafka.admin", extra="kafka", what="the kafka scaler")

_NOT_TRANSIENT_CODES: Final = frozenset(
    {
        "UNKNOWN_TOPIC_OR_PART",
        "TOPIC_AUTHORIZATION_FAILED",
        "GROUP_AUTHORIZATION_FAILED",
        "CLUSTER_AUTHORIZATION_FAILED",
        "SASL_AUTHENTICATION_FAILED",
        "_AUTHENTICATION",
        "_SSL",
        "INVALID_GROUP_ID",
        "GROUP_ID_NOT_FOUND",
        "_INVALID_ARG",
        "_UNSUPPORTED_FEATURE",
    }
)
_DISCOVERY_REQUEST_TIMEOUT: Final = 300.0
_TIMEOUT_CODES: Final = frozenset({"_TIMED_OUT", "REQUEST_TIMED_OUT", "_TIMED_OUT_QUEUE"})


class KafkaScaler(ScalerBase):
    """Scales on the lag of a Kafka consumer group (``type: kafka``).

    Build it with :meth:`from_context` (KEDA metadata) or from a :class:`KafkaMetadata`.
    The client is shared with every other scaler on the same cluster connection
    settings and created at the first poll; :meth:`aclose` gives it back.

    ``batch`` (default ``True``) lets the scaler join the batch path when its connection
    settings allow it (no Kerberos, OAUTHBEARER or MSK IAM; :attr:`batched` tells);
    ``False`` keeps it on the librdkafka path.
    """

    def __init__(
        self,
        config: KafkaMetadata,
        *,
        pool: KafkaClientPool = POOL,
        kerberos: KerberosRegistry = KERBEROS,
        trigger_name: str | None = None,
        batch: bool = True,
    ) -> None:
        meta = self.meta = config
        self._pool = pool
        self._kerberos = kerberos
        self._identity = trigger_name or f"kafka[{meta.index}]"
        self._previous_offsets: dict[TopicPartition, int] = {}
        settings: dict[str, Any] = dict(meta.librdkafka)
        _check_pem(meta)
        secrets = [v for v in meta.librdkafka.values() if isinstance(v, Secret)]
        self._kerberos_files: KerberosFiles | None = None
        self._aws_chain: CredentialSource | None = None
        if meta.sasl is SaslMechanism.GSSAPI:
            files = self._kerberos_files = _kerberos_files(meta, kerberos)
            settings["sasl.kerberos.kinit.cmd"] = files.kinit_command
            if files.keytab_path is not None:
                settings["sasl.kerberos.keytab"] = str(files.keytab_path)
            if files.login.password is not None:
                secrets.append(files.login.password)
        elif meta.sasl is SaslMechanism.OAUTHBEARER and meta.sasl_token_provider == "aws_msk_iam":
            provider = _msk_iam_provider(meta)
            settings["oauth_cb"] = provider
            if isinstance(provider.credentials, AwsCredentials):
                secrets.extend(provider.credentials.secrets())
            else:  # the AWS default chain: read (and checked) before each client is made
                self._aws_chain = provider.credentials
        self._secrets = secrets
        self._conn: KafkaConnection | None = pool.acquire(settings)
        #: Whether polls go through the batch path (see the class docstring).
        self.batched = (
            batch
            and batchable(settings)
            # a subclass that picks its partitions its own way keeps librdkafka
            and type(self)._partitions is KafkaScaler._partitions
        )

    @classmethod
    def from_context(cls, ctx: TriggerContext) -> KafkaScaler:
        """Parse ``ctx`` into a :class:`KafkaMetadata` and build the scaler.

        :raises ConfigError: bad metadata, or a SASL setup this process cannot use
            (GSSAPI without GSSAPI in librdkafka or with a second Kerberos login,
            ``aws_msk_iam`` without an access key).
        """
        return cls(KafkaMetadata.from_context(ctx), trigger_name=ctx.identity)

    @property
    def connection(self) -> KafkaConnection | None:
        """The shared connection this scaler holds (``None`` once closed)."""
        return self._conn

    def metric_specs(self) -> Sequence[MetricSpec]:
        """One metric: the (capped) lag, target ``lagThreshold``."""
        return (
            MetricSpec(
                name=self.meta.metric_name,
                target=self.meta.lag_threshold,
                metric_type=self.meta.metric_type,
                activation_target=self.meta.activation_lag_threshold,
            ),
        )

    async def aclose(self) -> None:
        """Release the shared client; the last scaler on a connection destroys it.

        With ``sasl: gssapi`` the last scaler of the Kerberos login also deletes its
        keytab (or password), krb5.conf and ticket cache files.
        """
        conn, self._conn = self._conn, None
        if conn is None:
            return
        box = self._pool.release(conn)
        try:
            if box:
                await anyio.to_thread.run_sync(_destroy, box)
        finally:
            files, self._kerberos_files = self._kerberos_files, None
            if files is not None:
                self._kerberos.release(files)

    # -- one poll ------------------------------------------------------------------

    async def get_metrics(self) -> ScalerReport:
        """Poll the cluster once. :raises ScalerError: on any failure (never lag 0)."""
        totals = await self.get_lag()
        value = cap_total_lag(totals, self.meta)
        return ScalerReport.single(
            self.meta.metric_name,
            float(value),
            is_active=totals.total_lag_with_persistent > self.meta.activation_lag_threshold,
        )

    async def get_lag(self) -> LagTotals:
        """Read the offsets and compute the uncapped lag totals (with per-partition detail)."""
        conn = self._conn
        if conn is None:
            raise ScalerError("the kafka scaler is closed", trigger=self._identity, transient=False)
        try:
            totals = await self._get_lag(conn)
        except ScalerError as exc:
            _forget_frames(exc)
            raise exc.with_trigger(self._identity) from exc.__cause__
        except Exception as exc:
            _forget_frames(exc)
            raise
        finally:
            conn.serve_logs()
        conn.clear_auth_error()
        return totals

    async def _get_lag(self, conn: KafkaConnection) -> LagTotals:
        if self.batched:
            return await self._get_lag_batched(conn)
        ck, ck_admin = _ck, _ck_admin
        if self._aws_chain is not None and not conn.admin_created:
            # STS / the credentials endpoint, off the event loop; errors are ScalerErrors
            # here rather than a failed token inside librdkafka.
            await anyio.to_thread.run_sync(self._aws_chain.current)
        # Creating a client can block (an OAUTHBEARER callback runs in the constructor).
        admin = conn.admin() if conn.admin_created else await anyio.to_thread.run_sync(conn.admin)
        meta = self.meta
        timeout = meta.timeout.total_seconds()
        ttl = meta.snapshot_ttl.total_seconds()
        group = meta.consumer_group

        wanted, committed_all = await self._partitions(conn, admin)

        # 3. committed and log end (and log start) offsets, concurrently
        tps = [ck.TopicPartition(t, p) for t, p in wanted]
        offsets_key = tuple(wanted)
        spec = ck_admin.OffsetSpec
        latest_futures = conn.shared(
            ("latest", offsets_key),
            ttl,
            lambda: admin.list_offsets({tp: spec.latest() for tp in tps}, request_timeout=timeout),
        )
        earliest_futures: Futures | None = None
        if (
            meta.offset_reset_policy is OffsetResetPolicy.EARLIEST
            and not meta.scale_to_zero_on_invalid_offset
        ):
            earliest_futures = conn.shared(
                ("earliest", offsets_key),
                ttl,
                lambda: admin.list_offsets(
                    {tp: spec.earliest() for tp in tps}, request_timeout=timeout
                ),
            )
        if committed_all is None:
            # the list-offsets requests are in flight meanwhile
            consumer = (
                conn.consumer(group)
                if conn.consumer_created(group)
                else await anyio.to_thread.run_sync(conn.consumer, group)
            )
            committed = await self._fetch_committed(consumer, tps, timeout)
        else:
            committed = {tp: committed_all.get(tp, INVALID_OFFSET) for tp in wanted}
        await self._wait(latest_futures, timeout, "read the log end offsets")
        latest: dict[str, dict[int, int]] = {}
        for tp, future in latest_futures.items():
            info = self._result(future, f"list offsets of {tp.topic!r}")
            latest.setdefault(tp.topic, {})[tp.partition] = int(info.offset)
        earliest: dict[TopicPartition, int] | None = None
        if earliest_futures is not None:
            earliest = await self._earliest(earliest_futures, committed, timeout)

        memory = dict(self._previous_offsets)
        totals = compute_lag(
            committed,
            latest,
            policy=meta.offset_reset_policy,
            scale_to_zero_on_invalid_offset=meta.scale_to_zero_on_invalid_offset,
            earliest_offsets=earliest,
            exclude_persistent_lag=meta.exclude_persistent_lag,
            previous_offsets=memory,
        )
        self._previous_offsets = memory
        return totals

    async def _get_lag_batched(self, conn: KafkaConnection) -> LagTotals:
        meta = self.meta
        query = LagQuery(
            group=meta.consumer_group,
            topic=meta.topic or None,
            limitation=meta.partition_limitation,
            earliest=meta.offset_reset_policy is OffsetResetPolicy.EARLIEST
            and not meta.scale_to_zero_on_invalid_offset,
            timeout=meta.timeout.total_seconds(),
        )
        inputs = await conn.batcher(KafkaBatcher).read(query)
        memory = dict(self._previous_offsets)
        totals = compute_lag_by_topic(
            inputs.committed,
            inputs.latest,
            policy=meta.offset_reset_policy,
            scale_to_zero_on_invalid_offset=meta.scale_to_zero_on_invalid_offset,
            earliest_offsets=inputs.earliest,
            exclude_persistent_lag=meta.exclude_persistent_lag,
            previous_offsets=memory,
        )
        self._previous_offsets = memory
        return totals

    async def _partitions(
        self, conn: KafkaConnection, admin: Any
    ) -> tuple[list[TopicPartition], dict[TopicPartition, int] | None]:
        """The partitions to read and, when discovery read them, the group's commits.

        A hook: the ``apache-kafka`` trigger (``apache.py``) discovers topics its own way.
        """
        ck = _ck
        meta = self.meta
        timeout = meta.timeout.total_seconds()
        ttl = meta.snapshot_ttl.total_seconds()
        group = meta.consumer_group

        # 1. which topics (and, without a topic, what the group has committed)
        committed_all: dict[TopicPartition, int] | None = None
        if meta.topic:
            topics = [meta.topic]
        else:
            request = ck.ConsumerGroupTopicPartitions(group)
            # librdkafka's own request timeout is kept long on purpose: when an admin group
            # request times out inside librdkafka during an outage, librdkafka 2.16 aborts
            # the process once the broker is back. This call gives up after `timeout`.
            futures = admin.list_consumer_group_offsets(
                [request], request_timeout=max(timeout, _DISCOVERY_REQUEST_TIMEOUT)
            )
            await self._wait(futures, timeout, "read the committed offsets of the group")
            committed_all = self._committed(futures, group)
            topics = sorted({t for t, _ in committed_all})
            if not topics:
                raise ScalerError(
                    f"consumer group {group!r} has no committed offsets, so its topics are "
                    "unknown; set `topic` (eventscale never scans every topic of the cluster)",
                    transient=True,
                )

        # 2. metadata: the partitions of each topic
        topic_key = ("describe", tuple(topics))
        described = conn.shared(
            topic_key,
            ttl,
            lambda: admin.describe_topics(ck.TopicCollection(topics), request_timeout=timeout),
        )
        await self._wait(described, timeout, "read the topic metadata")
        wanted: list[TopicPartition] = []
        for topic in topics:
            description = self._result(described[topic], f"describe topic {topic!r}")
            ids = select_partitions(
                topic, [p.id for p in description.partitions], meta.partition_limitation
            )
            wanted.extend((topic, i) for i in ids)
        return wanted, committed_all

    async def _earliest(
        self,
        futures: Futures,
        committed: Mapping[TopicPartition, int],
        limit: float,
    ) -> dict[TopicPartition, int] | None:
        # Only partitions without a commit need their log start; if that read fails the
        # lag falls back to the log end offset, as upstream KEDA does.
        needed = {
            tp: f
            for tp, f in futures.items()
            if committed.get((tp.topic, tp.partition)) == INVALID_OFFSET
        }
        if not needed:
            return {}
        try:
            await self._wait(needed, limit, "read the log start offsets")
            return {
                (tp.topic, tp.partition): int(self._result(f, "list earliest offsets").offset)
                for tp, f in needed.items()
            }
        except ScalerError as exc:
            _LOG.warning(
                "%s: log start offsets unavailable, using log end: %s", self._identity, exc
            )
            return None

    async def _fetch_committed(
        self, consumer: Any, tps: list[Any], limit: float
    ) -> dict[TopicPartition, int]:
        group = self.meta.consumer_group
        try:
            with anyio.fail_after(limit + 1.0):
                got = await anyio.to_thread.run_sync(
                    lambda: consumer.committed(tps, timeout=limit), abandon_on_cancel=True
                )
        except TimeoutError as exc:
            raise ScalerTimeout(
                f"could not read the committed offsets of group {group!r} within {limit:g}s "
                f"({self._servers()})"
            ) from exc
        except Exception as exc:
            raise self._translate(exc, f"read the committed offsets of group {group!r}") from exc
        return self._committed_list(got)

    def _committed(self, futures: Futures, group: str) -> dict[TopicPartition, int]:
        result = self._result(futures[group], f"read committed offsets of group {group!r}")
        return self._committed_list(result.topic_partitions)

    def _committed_list(self, tps: Iterable[Any]) -> dict[TopicPartition, int]:
        out: dict[TopicPartition, int] = {}
        for tp in tps:
            if tp.error is not None:
                raise self._translate(tp.error, f"committed offset of {tp.topic!r}/{tp.partition}")
            out[(tp.topic, tp.partition)] = int(tp.offset) if tp.offset >= 0 else INVALID_OFFSET
        return out

    async def _wait(
        self,
        futures: Futures | Iterable[concurrent.futures.Future[Any]],
        limit: float,
        what: str,
    ) -> None:
        items = list(futures.values() if isinstance(futures, Mapping) else futures)
        if all(f.done() for f in items):
            return

        def wait() -> int:
            _, not_done = concurrent.futures.wait(
                items, timeout=limit + 1.0, return_when=concurrent.futures.FIRST_EXCEPTION
            )
            return len(not_done)

        failed = next((f for f in items if f.done() and f.exception() is not None), None)
        if failed is None:
            left = await anyio.to_thread.run_sync(wait, abandon_on_cancel=True)
            failed = next((f for f in items if f.done() and f.exception() is not None), None)
            if failed is None and left:
                refused = self._refused(what)
                if refused is not None:
                    raise refused
                raise ScalerTimeout(
                    f"could not {what} within {limit:g}s ({self._servers()})", transient=True
                )
        if failed is not None:
            self._result(failed, what)

    def _result(self, future: concurrent.futures.Future[Any], what: str) -> Any:
        try:
            return future.result(timeout=0)
        except concurrent.futures.TimeoutError as exc:  # not done: caller's wait timed out
            raise ScalerTimeout(f"could not {what}: timed out ({self._servers()})") from exc
        except Exception as exc:
            raise self._translate(exc, what) from exc

    def _servers(self) -> str:
        return "bootstrap servers " + redact_text(
            ",".join(self.meta.bootstrap_servers), self._secrets
        )

    def _refused(self, what: str) -> ScalerError | None:
        """A non-transient error if librdkafka reported that the brokers refused to
        authenticate this client (its requests then merely time out)."""
        conn = self._conn
        if conn is None:
            return None
        conn.serve_logs()  # runs librdkafka's error callback
        if conn.auth_error is None:
            return None
        name, text = conn.auth_error
        return ScalerError(
            redact_text(
                f"could not {what}: the brokers refused authentication: {name}: {text} "
                f"({self._servers()})",
                self._secrets,
            ),
            transient=False,
        )

    def _translate(self, exc: object, what: str) -> ScalerError:
        # a KafkaException wraps a KafkaError; a per-partition error is a bare KafkaError
        args = getattr(exc, "args", None)
        error: Any = args[0] if args else exc
        name = error.name() if hasattr(error, "name") else type(error).__name__
        text = error.str() if hasattr(error, "str") else str(error)
        message = redact_text(
            f"could not {what}: {name}: {text} ({self._servers()})", self._secrets
        )
        if name == "UNKNOWN_TOPIC_OR_PART":
            message = redact_text(
                f"could not {what}: the topic does not exist ({name}, {self._servers()})",
                self._secrets,
            )
        if name in _TIMEOUT_CODES:
            return self._refused(what) or ScalerTimeout(message, transient=True)
        return ScalerError(message, transient=name not in _NOT_TRANSIENT_CODES)


def _check_pem(meta: KafkaMetadata) -> None:
    """Load the TLS PEM material in Python first: librdkafka may abort the process on
    bad PEM (kafka/_pem.py). KEDA fails the scaler's creation there too
    (``NewTLSConfigWithPassword`` in KEDA's ``pkg/util/tls_config.go``)."""

    def get(key: str) -> Secret | None:
        value = meta.librdkafka.get(key)
        return Secret(value) if isinstance(value, str) else value

    problem = pem_problem(
        get("ssl.ca.pem"),
        get("ssl.certificate.pem"),
        get("ssl.key.pem"),
        get("ssl.key.password"),
    )
    if problem is not None:
        reason, name = problem
        raise ConfigError(reason, path=meta.field_path(name, auth=True))


def _kerberos_files(meta: KafkaMetadata, registry: KerberosRegistry) -> KerberosFiles:
    if not librdkafka_has_gssapi():
        raise ConfigError(
            "sasl gssapi needs a librdkafka built with GSSAPI (Cyrus SASL), and the one "
            f"confluent-kafka loaded here (librdkafka {_ck.libversion()[0]}) was built "
            "without it, as the confluent-kafka wheels on PyPI are; to use Kerberos, build "
            "confluent-kafka from source (pip install --no-binary confluent-kafka) against "
            "a librdkafka of the same version built with libsasl2",
            path=meta.field_path("sasl"),
        )
    if meta.kerberos is None:  # KafkaMetadata.from_context always sets it for gssapi
        raise ConfigError("sasl gssapi without a Kerberos login", path=meta.field_path("sasl"))
    return registry.acquire(meta.kerberos, path=meta.field_path("kerberosConfig", auth=True))


def _msk_iam_provider(meta: KafkaMetadata) -> MskIamTokenProvider:
    if meta.msk_iam is None:
        raise ConfigError(
            "sasl aws_msk_iam needs AWS credentials: awsAccessKeyID and "
            "awsSecretAccessKey, or podIdentity aws / awsRoleArn (the default chain)",
            path=meta.field_path("awsAccessKeyID", auth=True),
        )
    if not valid_region(meta.aws_region):
        raise ConfigError(
            f"awsRegion {meta.aws_region!r} is not an AWS region name",
            path=meta.field_path("awsRegion"),
        )
    return meta.msk_iam


def _forget_frames(exc: BaseException) -> None:
    """Drop the tracebacks of ``exc`` and its causes.

    A traceback keeps the frames of ``_get_lag`` alive, and with them its local
    reference to the admin client: an error kept by the controller (the object's last
    error) would keep the librdkafka handle, and its reconnect attempts, alive after
    :meth:`KafkaScaler.aclose`. The messages say what failed; the frames add nothing.
    """
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        current.__traceback__ = None
        todo.extend((current.__cause__, current.__context__))


def _destroy(box: list[Any]) -> None:
    # Closing consumers and dropping the last reference to the admin client destroys the
    # librdkafka handles (it may block briefly), so it happens in a worker thread.
    for client in box:
        close = getattr(client, "close", None)
        if close is not None:
            try:
                close()
            except Exception as exc:  # a failed close must not hide the others
                _LOG.debug("closing a kafka client failed: %s", exc)
    box.clear()
