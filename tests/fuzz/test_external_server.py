"""Fuzz the external scaler server's request handling with random ``ScaledObjectRef``s.

The servicer methods are called directly (as gRPC would) with a context whose ``abort``
records the status. Allowed: an answer, INVALID_ARGUMENT (metadata that cannot build
the scaler it selects) or NOT_FOUND (nothing selected). The scalers it can reach parse
without a network (named test scalers, and the ``cron`` and ``memory`` types).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventscale.external import ExternalScalerServer, _proto
from eventscale.external.server import _Servicer
from eventscale.testing import StaticScaler

from ._budget import budget

pb: Any = _proto.messages()
grpc: Any = _proto.grpc()
ALLOWED = {"INVALID_ARGUMENT", "NOT_FOUND"}


class Aborted(Exception):
    def __init__(self, code: Any, details: str) -> None:
        super().__init__(details)
        self.code = code


class Context:
    async def abort(self, code: Any, details: str) -> None:
        raise Aborted(code, details)


texts = st.text(max_size=12) | st.sampled_from(["", " ", "ok", "huge", "orders", "x" * 5000])
keys = st.sampled_from(
    [
        "scalerName",
        "scalerType",
        "scalerAddress",
        "start",
        "end",
        "timezone",
        "desiredReplicas",
        "name",
        "targetValue",
        "activationTargetValue",
        "listNameFromEnv",
        "enableTLS",
    ]
) | st.text(max_size=8)
values = (
    st.sampled_from(
        [
            "ok",
            "huge",
            "cron",
            "memory",
            "redis",
            "kafka",
            "0 * * * *",
            "59 23 * * *",
            "UTC",
            "Europe/Paris",
            "x/" * 200,
            "-1",
            "1e400",
            "nan",
            "3",
            "",
        ]
    )
    | texts
)
refs = st.builds(
    lambda name, namespace, meta: pb.ScaledObjectRef(
        name=name, namespace=namespace, scalerMetadata=meta
    ),
    texts,
    texts,
    st.dictionaries(keys, values, max_size=6),
)


def _server() -> ExternalScalerServer:
    return ExternalScalerServer(
        {"ok": StaticScaler(3, name="s0-q", target=2), "huge": StaticScaler(1, target=1e300)},
        allow_types={"cron", "memory"},
        cache_ttl=0,
        idle_timeout=None,
    )


async def _ask(servicer: _Servicer, ref: Any, metric: str) -> None:
    context = Context()
    request = pb.GetMetricsRequest(scaledObjectRef=ref, metricName=metric)
    calls: list[Callable[[], Awaitable[Any]]] = [
        lambda: servicer.GetMetricSpec(ref, context),
        lambda: servicer.IsActive(ref, context),
        lambda: servicer.GetMetrics(request, context),
    ]
    codes = []
    for call in calls:
        try:
            await call()
        except Aborted as exc:
            codes.append((exc.code.name, str(exc)))
    assert all(code in ALLOWED for code, _ in codes), codes


@budget(600)
@given(ref=refs, metric=st.sampled_from(["", "q", "static", "nope"]))
def test_random_refs_get_an_answer_or_a_documented_status(ref: Any, metric: str) -> None:
    async def main() -> None:
        server = _server()
        try:
            await _ask(_Servicer(server), ref, metric)
        finally:
            await server.aclose()

    anyio.run(main)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1.0, 1e20, 1e300])
def test_a_value_keda_cannot_use_is_an_error_status_not_a_crash(value: float) -> None:
    async def main() -> None:
        server = ExternalScalerServer({"bad": StaticScaler(value, name="s0-q")}, cache_ttl=0)
        servicer = _Servicer(server)
        ref = pb.ScaledObjectRef(name="o", namespace="n", scalerMetadata={"scalerName": "bad"})
        request = pb.GetMetricsRequest(scaledObjectRef=ref, metricName="q")
        with pytest.raises(Aborted) as info:
            await servicer.GetMetrics(request, Context())
        assert info.value.code.name == "FAILED_PRECONDITION"
        assert "'q'" in str(info.value)
        await server.aclose()

    anyio.run(main)


def test_scalers_built_from_requests_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from eventscale.external import server as server_module

    monkeypatch.setattr(server_module, "MAX_DYNAMIC_SCALERS", 3)

    def cron(replicas: int) -> Any:
        meta = {
            "scalerType": "cron",
            "timezone": "UTC",
            "start": "0 * * * *",
            "end": "59 * * * *",
            "desiredReplicas": str(replicas),
        }
        return pb.ScaledObjectRef(name="o", namespace="n", scalerMetadata=meta)

    async def main() -> None:
        server = ExternalScalerServer(allow_types={"cron"}, idle_timeout=None)
        servicer = _Servicer(server)
        try:
            for replicas in range(1, 8):
                answer = await servicer.GetMetricSpec(cron(replicas), Context())
                assert len(answer.metricSpecs) == 1
                assert len(server._dynamic) <= 3
            # every kept scaler has an open stream: the next distinct request is refused
            for entry in server._dynamic.values():
                entry.streams = 1
            with pytest.raises(Aborted) as info:
                await servicer.GetMetricSpec(cron(99), Context())
            assert info.value.code.name == "INVALID_ARGUMENT"
            assert "at most 3 scalers" in str(info.value)
        finally:
            await server.aclose()

    anyio.run(main)
