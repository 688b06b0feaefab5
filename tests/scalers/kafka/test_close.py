"""A closed kafka scaler leaves no librdkafka handle behind (no reconnects after aclose)."""

from __future__ import annotations

import gc

import pytest

from eventscale.errors import ScalerError
from eventscale.scalers.kafka.scaler import KafkaScaler
from eventscale.scalers.params import TriggerContext
from servers._proc import free_port

# a connection of its own: scalers with equal settings share one client
META = {"bootstrapServers": f"127.0.0.1:{free_port()}", "consumerGroup": "g"}


@pytest.mark.anyio
async def test_aclose_destroys_the_librdkafka_handles_even_when_an_error_is_kept() -> None:
    # The controller keeps an object's last error; its traceback must not keep the
    # admin client (and its reconnect attempts) alive after aclose.
    ctx = TriggerContext(
        metadata={**META, "timeout": "1s", "topic": "closed-client"}, trigger_type="kafka"
    )
    before = {id(o) for o in _handles()}  # other tests' clients, alive or not
    scaler = KafkaScaler.from_context(ctx)
    with pytest.raises(ScalerError) as info:
        await scaler.get_metrics()
    kept = info.value
    await scaler.aclose()
    gc.collect()
    assert [o for o in _handles() if id(o) not in before] == []
    assert "could not" in str(kept)  # the error still says what failed


def _handles() -> list[object]:
    return [o for o in gc.get_objects() if type(o).__name__ in ("AdminClient", "Consumer")]
