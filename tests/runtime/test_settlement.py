"""How the edge settles RB_OUT messages from the link's answers."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from bridge.edge.bridge import EdgeBridge, Pending
from bridge.edge.metrics import EdgeMetrics
from bridge.link import Envelope, Reject
from bridge.runtime.memory import MemoryBus, MemoryStream


class FakeMessage:
    def __init__(self, delivered: int = 1) -> None:
        self.metadata = SimpleNamespace(num_delivered=delivered)


class FakeAudit:
    def __init__(self) -> None:
        self.records: list[Any] = []

    def append(self, records: list[Any]) -> None:
        self.records.extend(records)


class FakePolicy:
    class engine:  # stands in for the attribute of the same name
        name = "claims"


def bridge() -> EdgeBridge:
    return EdgeBridge(
        site="plant-a", nc=MemoryBus(), publisher=MemoryStream(), policy=FakePolicy(), audit=FakeAudit(), links={},  # type: ignore[arg-type]
        tokens=None, metrics=EdgeMetrics(),  # type: ignore[arg-type]
    )  # fmt: skip


@pytest.mark.parametrize(
    ("code", "delivered", "delay"),
    [
        ("link-lost", 1, 0.5),
        ("link-lost", 9, 0.5),  # the link is back: at once, whatever came before
        ("store-failed", 1, 0.5),
        ("store-failed", 3, 2.0),  # a cloud store that stays full is asked less often
        ("store-failed", 40, 5.0),
        ("handler-failed", 2, 1.0),
    ],
)
async def test_retriable_refusals_put_the_message_back(
    code: str, delivered: int, delay: float
) -> None:
    """Not stored *this time*: nak, so RB_OUT redelivers; nothing is terminated or audited."""
    edge = bridge()
    message: Any = FakeMessage(delivered)
    edge.on_result(
        Pending(message, 0.0, "docs.parse", ""),
        Envelope("id", "docs.parse", b"{}"),
        Reject(code, "x"),
    )
    assert [
        (kind, after) for kind, queued, after in edge.settlement._queue if queued is message
    ] == [("nak", delay)]
    assert edge.audit.records == []  # type: ignore[attr-defined]


async def test_a_final_refusal_terminates_and_is_audited() -> None:
    """The cloud said never (its leak guard, the site's capabilities): term, and record it."""
    edge = bridge()
    message: Any = FakeMessage()
    edge.on_result(
        Pending(message, 0.0, "docs.parse", ""),
        Envelope("id", "docs.parse", b"{}", rule="r"),
        Reject("leak-guard", "x"),
    )
    assert [kind for kind, queued, _ in edge.settlement._queue if queued is message] == ["term"]
    (record,) = edge.audit.records  # type: ignore[attr-defined]
    assert (record["decision"], record["reason"]) == ("refused-by-cloud", "cloud:leak-guard")
