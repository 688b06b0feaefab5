"""The examples of docs/targets/kubernetes.md ("Watching and events") run against the
stand-in."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import anyio
import pytest

from eventscale.kube import KubeClient, KubeConfig
from servers.kubernetes_srv import KubeStandIn

DOC = Path(__file__).parents[2] / "docs" / "targets" / "kubernetes.md"


def _examples() -> list[str]:
    text = DOC.read_text()
    section = text[text.index("## Watching and events") :]
    section = section[: section.index("\n## ", 3)]
    return re.findall(r"```python\n(.*?)```", section, re.DOTALL)


@pytest.mark.anyio
async def test_the_informer_example_follows_objects(
    kube_standin: KubeStandIn,
    ns: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    follow_code, _ = _examples()
    monkeypatch.setenv("KUBECONFIG", str(kube_standin.kubeconfig(ns)))
    name = f"docs-{ns}"
    kube_standin.api.scaled_object(name, "shop")
    scope: dict[str, Any] = {}
    exec(follow_code, scope)
    with anyio.move_on_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(scope["follow"])
            seen = ""
            while f"ADDED {name}" not in seen:
                seen += capsys.readouterr().out
                await anyio.sleep(0.05)
            kube_standin.api.scaled_object(name, "shop", minReplicaCount=2)
            while f"MODIFIED {name}" not in seen:
                seen += capsys.readouterr().out
                await anyio.sleep(0.05)
            tg.cancel_scope.cancel()
    assert f"MODIFIED {name}" in seen


@pytest.mark.anyio
async def test_the_event_example_records(kube_standin: KubeStandIn, ns: str) -> None:
    _, record_code = _examples()
    obj = kube_standin.api.scaled_object("docs", ns)
    client = KubeClient(KubeConfig.from_kubeconfig(kube_standin.kubeconfig(ns)))
    scope: dict[str, Any] = {}
    try:
        exec(record_code, scope)
        await scope["report_failure"](client, obj)
    finally:
        await client.aclose()
    (event,) = kube_standin.api.events_for(ns, "docs")
    assert (event["reason"], event["source"]["host"]) == ("KEDAScalerFailed", "eventscale-0")
