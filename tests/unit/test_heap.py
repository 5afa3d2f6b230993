"""The collector of a started bridge process: what it holds is frozen, the young generation is
collected less often, and both runtimes settle it once they have started."""

from __future__ import annotations

import gc
from types import SimpleNamespace
from typing import Any

import pytest

from bridge.cloud import app as cloud_app
from bridge.edge import app as edge_app
from bridge.runtime import heap


def test_settle_freezes_the_started_process_and_collects_the_young_less_often() -> None:
    threshold = gc.get_threshold()
    assert gc.get_freeze_count() == 0
    try:
        heap.settle()
        assert gc.get_freeze_count() > 10_000  # the loaded modules and what they made
        assert gc.get_threshold() == (heap.YOUNG, *threshold[1:])
    finally:  # this test run's own garbage must stay visible to the collector
        gc.unfreeze()
        gc.set_threshold(*threshold)


class FakeApp:
    http_port = 0
    port = 0

    def __init__(self, settings: Any) -> None:
        self.settings = settings

    async def start(self) -> None:
        calls.append("start")

    async def stop(self) -> None: ...

    def describe_policy(self) -> str:
        return ""

    def reload(self, force: bool = False) -> bool:
        return force


calls: list[str] = []


@pytest.mark.parametrize(
    ("module", "app_class"), [(edge_app, "EdgeApp"), (cloud_app, "CloudGateway")]
)
async def test_each_runtime_settles_the_collector_once_started(
    monkeypatch: pytest.MonkeyPatch, module: Any, app_class: str
) -> None:
    calls.clear()
    monkeypatch.setattr(module, app_class, FakeApp)
    monkeypatch.setattr(heap, "settle", lambda: calls.append("settle"))

    async def served(*_arguments: Any, **_options: Any) -> None:
        calls.append("serve")

    monkeypatch.setattr(module.systemd, "serve_until_signalled", served)
    await module.run(SimpleNamespace(site="plant-a", listen="127.0.0.1:0"))
    assert calls == ["start", "settle", "serve"]
