"""Shared pieces of the SQL scalers (``postgresql``, ``mysql``).

* :class:`PoolRegistry` shares one small driver connection pool per connection settings
  (and per event loop: driver connections belong to the loop that opened them) between
  every scaler that uses them, and closes the pool when its last scaler closes.
* :class:`SQLScaler` is what both scalers share: the pool hold, the poll deadline, the
  metric and activity, error messages that name the server and never a secret.
* :func:`single_number` is the one-number rule of both scalers: the query must return
  exactly one row of exactly one column holding a finite number. Anything else (no row,
  several rows or columns, ``NULL``, text that is not a number, NaN, infinity) is a
  :class:`~eventscale.errors.ScalerError`, never a value of 0.
"""

from __future__ import annotations

import asyncio
import decimal
import hashlib
import math
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Final, Generic, TypeVar

import attrs

from eventscale.errors import ScalerError, ScalerTimeout
from eventscale.metrics import MetricSpec, ScalerReport
from eventscale.redaction import Secret, redact_text
from eventscale.scalers import ScalerBase
from eventscale.scalers.params import parse_json_float

__all__ = (
    "CLIENT_GRACE",
    "DEFAULT_TIMEOUT",
    "POOL_SIZE",
    "PoolRegistry",
    "SQLScaler",
    "fingerprint",
    "single_number",
)

DEFAULT_TIMEOUT: Final = 10.0
"""Seconds one poll may take, on the server (statement bound) and in the client."""
POOL_SIZE: Final = 2
"""The most connections one shared pool opens (scalers poll one query at a time)."""
CLIENT_GRACE: Final = 1.0
"""Seconds the client waits past the server's statement bound before it gives up."""

P = TypeVar("P")


@attrs.define
class _Entry(Generic[P]):
    pool: P
    refs: int


class PoolRegistry(Generic[P]):
    """One driver pool per key and event loop, reference-counted.

    Keys never hold secrets (use :func:`fingerprint` for passwords). ``close`` closes a
    pool when its last user releases it.
    """

    def __init__(self, close: Callable[[P], Awaitable[None]]) -> None:
        self._close = close
        self._entries: dict[tuple[int, tuple[Any, ...]], _Entry[P]] = {}

    def _full_key(self, key: tuple[Any, ...]) -> tuple[int, tuple[Any, ...]]:
        return (id(asyncio.get_running_loop()), key)

    async def acquire(self, key: tuple[Any, ...], factory: Callable[[], Awaitable[P]]) -> P:
        """The pool for ``key``, created with ``factory`` on first use; add one reference."""
        full = self._full_key(key)
        entry = self._entries.get(full)
        if entry is None:
            made = await factory()
            # Another task may have made one while we awaited: keep the first.
            entry = self._entries.get(full)
            if entry is None:
                entry = _Entry(made, 0)
                self._entries[full] = entry
            else:
                await self._close(made)
        entry.refs += 1
        return entry.pool

    async def release(self, key: tuple[Any, ...]) -> None:
        """Drop one reference; close the pool when none is left."""
        full = self._full_key(key)
        entry = self._entries.get(full)
        if entry is None:
            return
        entry.refs -= 1
        if entry.refs <= 0:
            del self._entries[full]
            await self._close(entry.pool)

    def refcount(self, key: tuple[Any, ...]) -> int:
        """How many scalers hold the pool for ``key`` on the running loop."""
        entry = self._entries.get(self._full_key(key))
        return entry.refs if entry is not None else 0


def fingerprint(secret: Secret | None) -> str:
    """A short one-way fingerprint of ``secret``, safe in pool keys and reprs."""
    if secret is None:
        return "-"
    return hashlib.sha256(secret.reveal().encode()).hexdigest()[:16]


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float | decimal.Decimal):
        return float(value)
    if isinstance(value, str):
        # database/sql scans text into a float64 with strconv.ParseFloat; JSON numbers
        # (plus surrounding blanks) are the portable subset of that.
        try:
            return parse_json_float(value.strip())
        except ValueError:
            return None
    return None


def single_number(rows: Sequence[Sequence[Any]], *, what: str, trigger: str) -> float:
    """The one finite number ``rows`` must hold. :raises ScalerError: (permanent) otherwise.

    ``what`` names the source in messages (``"the postgresql query"``). A value is never
    shown: query results may be private.
    """

    def fail(reason: str) -> ScalerError:
        return ScalerError(f"{what} {reason}", trigger=trigger, transient=False)

    if not rows:
        raise fail("returned no row (it must return one row with one number)")
    if len(rows) > 1:
        raise fail(f"returned {len(rows)} rows (it must return one row with one number)")
    row = rows[0]
    if len(row) != 1:
        raise fail(f"returned {len(row)} columns (it must return one number)")
    raw = row[0]
    if raw is None:
        raise fail("returned NULL (use COALESCE(..., 0) for a default)")
    value = _number(raw)
    if value is None:
        raise fail(f"returned a {type(raw).__name__}, not a number")
    if math.isnan(value) or math.isinf(value):
        raise fail(f"returned {value!r}, not a finite number")
    return value


class SQLScaler(ScalerBase):
    """A scaler that runs one query through a shared pool and reports its number.

    A subclass sets ``engine`` (``"postgresql"``), builds ``spec``, ``address``,
    ``pool_key`` (no secret in it) and ``secrets`` (to redact), and implements
    :meth:`_make_pool`, :meth:`_run` (the rows of one query on a pool) and
    :meth:`_translate` (a driver exception as a :class:`ScalerError`, or ``None``).
    """

    engine: str = "sql"

    def __init__(
        self,
        *,
        spec: MetricSpec,
        address: str,
        pool_key: tuple[Any, ...],
        pools: PoolRegistry[Any],
        secrets: Iterable[Secret | None],
        timeout: float,
        trigger: str,
    ) -> None:
        self.spec = spec
        self.address = address
        self.timeout = timeout
        self._pool_key = pool_key
        self._pools = pools
        self._secrets = tuple(secrets)
        self._trigger = trigger
        self._pool: Any = None
        self._closed = False

    def metric_specs(self) -> Sequence[MetricSpec]:
        """The one metric: the query's number and its target."""
        return (self.spec,)

    def _error(self, reason: str, *, transient: bool, timeout: bool = False) -> ScalerError:
        message = redact_text(f"{self.engine} at {self.address}: {reason}", self._secrets)
        kind = ScalerTimeout if timeout else ScalerError
        return kind(message, trigger=self._trigger, transient=transient)

    async def _make_pool(self) -> Any:
        raise NotImplementedError

    async def _run(self, pool: Any) -> Sequence[Sequence[Any]]:
        raise NotImplementedError

    def _translate(self, exc: Exception) -> ScalerError | None:
        raise NotImplementedError

    async def query_value(self) -> float:
        """Run the query once and return its number. :raises ScalerError: on any failure."""
        if self._closed:
            raise ScalerError("the scaler is closed", trigger=self._trigger, transient=False)
        try:
            # The client deadline leaves the server's statement bound room to answer first.
            async with asyncio.timeout(self.timeout + CLIENT_GRACE):
                if self._pool is None:
                    self._pool = await self._pools.acquire(self._pool_key, self._make_pool)
                rows = await self._run(self._pool)
        except ScalerError:
            raise
        except TimeoutError as exc:
            raise self._error(
                f"no answer within {self.timeout:g}s", transient=True, timeout=True
            ) from exc
        except Exception as exc:
            error = self._translate(exc)
            if error is None:
                raise
            raise error from exc
        return single_number(rows, what=f"the {self.engine} query", trigger=self._trigger)

    async def get_metrics(self) -> ScalerReport:
        """Poll once: the number, active when above the activation target."""
        value = await self.query_value()
        return ScalerReport.single(
            self.spec.name, value, is_active=value > self.spec.activation_target
        )

    async def aclose(self) -> None:
        """Release the shared pool (closed with its last user); safe to repeat."""
        if self._closed:
            return
        self._closed = True
        if self._pool is not None:
            self._pool = None
            await self._pools.release(self._pool_key)
