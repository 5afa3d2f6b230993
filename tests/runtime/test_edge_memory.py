"""The edge bridge's logic on the in-memory NATS stand-ins: decide, audit, forward, settle.

No server starts here (the same paths run on a real nats-server in the end-to-end tests, and the
stand-ins are held to the real ones by ``test_ports_contract``): these run before every commit.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from nats.errors import OutboundBufferLimitError

from bridge.audit import AuditTrail, AuditWriteError
from bridge.contract import HEADER_REASON, HEADER_REPLY_TO, HEADER_STATUS
from bridge.edge.bridge import EdgeBridge
from bridge.edge.metrics import EdgeMetrics
from bridge.edge.policy_source import PolicySource
from bridge.edge.tokens import ReplyRoute, ReplyTokens
from bridge.keys import FileKeyStore
from bridge.link import Envelope, Reject
from bridge.runtime.memory import MemoryBus, MemoryStream
from tests.conftest import POLICIES
from tests.runtime.helpers import read_records

CLAIM = {"claim_id": "CLM-1", "claimant": {"name": "Jane Doe", "ssn": "123-45-6789"}}


@dataclass
class RecordingLink:
    """A link that is up and keeps what it was given; the test answers for the cloud."""

    state: str = "up"
    sent: list[tuple[Envelope, Any]] = field(default_factory=list)

    async def send_many(self, items: Sequence[tuple[Envelope, Any]]) -> list[Any]:
        self.sent.extend(items)
        return []


@dataclass
class Edge:
    bridge: EdgeBridge
    outbound: MemoryStream
    quarantine: MemoryStream
    bus: MemoryBus
    link: RecordingLink
    audit_dir: Path

    async def send(self, subject: str, payload: Any, **headers: str) -> None:
        data = payload if isinstance(payload, bytes) else orjson.dumps(payload)
        headers = {k.replace("_", "-"): v for k, v in headers.items()}
        assert await self.outbound.publish_many([(f"rb.out.{subject}", data, headers)]) == [None]

    async def run(self) -> None:
        """One pull and everything it causes, settled."""
        messages = await self.outbound.pull(64, timeout=0.01)
        await self.bridge.process(messages)
        await self.bridge.background.drain()
        await self.bridge.settlement.flush()

    async def answer(self, reject: Reject | None = None) -> None:
        """The cloud answers every envelope sent so far."""
        sent, self.link.sent = self.link.sent, []
        for envelope, token in sent:
            self.bridge.on_result(token, envelope, reject)
        await self.bridge.background.drain()
        await self.bridge.settlement.flush()


@pytest.fixture
def edge(tmp_path: Path) -> Iterator[Edge]:
    keys = FileKeyStore(tmp_path / "keys")
    for name in ("pseudonyms", "correlation", "reply-tokens"):
        keys.create(name)
    (tmp_path / "policy").mkdir()
    shutil.copy(POLICIES / "claims.yaml", tmp_path / "policy" / "claims.yaml")
    policy = PolicySource(tmp_path / "policy" / "claims.yaml", keys, state_dir=tmp_path / "state")
    policy.load()
    outbound = MemoryStream(subjects=["rb.out.>"])
    quarantine = MemoryStream(subjects=["rb.quarantine.>"])
    bus = MemoryBus()
    link = RecordingLink()
    bridge = EdgeBridge(
        site="plant-a", nc=bus, publisher=quarantine, policy=policy,
        audit=AuditTrail(tmp_path / "audit"), links={"cloud-eu": link},  # type: ignore[dict-item]
        tokens=ReplyTokens(keys.current("reply-tokens"), "plant-a", 3600),
        metrics=EdgeMetrics(), quarantine=True,
    )  # fmt: skip
    yield Edge(bridge, outbound, quarantine, bus, link, tmp_path / "audit")
    bridge.audit.close()


async def test_an_allowed_message_leaves_redacted_and_is_acked_once_the_cloud_stored_it(
    edge: Edge,
) -> None:
    await edge.send("docs.parse", CLAIM, Rb_Class="internal")
    await edge.run()
    (envelope, _), *more = edge.link.sent
    assert not more
    assert b"123-45-6789" not in envelope.payload
    assert b"Jane Doe" not in envelope.payload
    assert envelope.rule == "claim-documents-to-eu-parser"
    assert edge.outbound.messages == 1  # not acked before the cloud said stored
    await edge.answer()
    assert edge.outbound.messages == 0
    (record,) = read_records(edge.audit_dir)
    assert (record["decision"], record["reason"]) == ("allow", "rule:claim-documents-to-eu-parser")


async def test_a_denied_message_is_terminated_quarantined_and_its_sender_told(edge: Edge) -> None:
    await edge.send("health.records", CLAIM, Rb_Reply_To="_INBOX.agent.1")
    await edge.run()
    assert edge.link.sent == []
    assert edge.outbound.messages == 0
    (notice,) = edge.bus.published
    assert notice.subject == "_INBOX.agent.1"
    assert notice.headers[HEADER_STATUS] == "denied"
    assert notice.headers[HEADER_REASON] == "rule:health-data-stays-home"
    assert notice.payload == b""  # status only, never the message
    ((_, kept),) = edge.quarantine.stored.items()
    assert kept.subject == "rb.quarantine.health.records"
    assert kept.headers[HEADER_REASON] == "rule:health-data-stays-home"
    (record,) = read_records(edge.audit_dir)
    assert (record["decision"], record["rule"]) == ("deny", "health-data-stays-home")


@pytest.mark.parametrize(
    "bad",
    [{"X(note)": "v"}, {"X-Note": "a\r\nb"}, {"X-Nul": "a\x00"}, {"X-Big": "x" * 2000}],
    ids=["name", "crlf", "nul", "too-long"],
)
async def test_a_message_denied_for_its_headers_is_quarantined_with_those_it_can_carry(
    edge: Edge, bad: dict[str, str]
) -> None:
    # Stored as a client that does not check header names would store it (the stand-in's own
    # publish refuses what NATS clients refuse).
    headers = {"Rb-Class": "confidential", "X-Keep": "kept", **bad}
    assert edge.outbound._store("rb.out.docs.parse", orjson.dumps(CLAIM), headers) is None
    await edge.run()
    (record,) = read_records(edge.audit_dir)
    assert (record["decision"], record["reason"]) == ("deny", "bad-header")
    ((_, kept),) = edge.quarantine.stored.items()
    assert kept.headers["X-Keep"] == "kept"
    assert kept.headers[HEADER_REASON] == "bad-header"
    assert not set(bad) & set(kept.headers)


@pytest.mark.parametrize(
    ("code", "settled"),
    [("link-lost", "put back"), ("store-failed", "put back"), ("leak-guard", "terminated")],
)
async def test_the_clouds_answer_decides_between_putting_back_and_terminating(
    edge: Edge, code: str, settled: str
) -> None:
    await edge.send("docs.parse", CLAIM, Rb_Class="internal", **{HEADER_REPLY_TO: "_INBOX.a.2"})
    await edge.run()
    await edge.answer(Reject(code, "x"))
    if settled == "put back":
        assert edge.outbound.messages == 1
        (again,) = await edge.outbound.pull(1, timeout=5)  # after the retry delay
        assert again.metadata.num_delivered == 2
        assert edge.bus.published == []
        return
    assert edge.outbound.messages == 0
    assert [n.headers[HEADER_REASON] for n in edge.bus.published] == [f"cloud:{code}"]
    assert [m.headers[HEADER_REASON] for m in edge.quarantine.stored.values()] == [f"cloud:{code}"]
    records = read_records(edge.audit_dir)
    assert [(r["decision"], r["reason"]) for r in records] == [
        ("allow", "rule:claim-documents-to-eu-parser"),
        ("refused-by-cloud", f"cloud:{code}"),
    ]


async def test_with_every_destination_down_the_message_waits_in_the_stream(edge: Edge) -> None:
    edge.link.state = "connecting"
    await edge.send("docs.parse", CLAIM, Rb_Class="internal")
    await edge.run()
    assert edge.link.sent == []
    assert edge.outbound.messages == 1
    assert edge.bridge.deferred == 1
    edge.link.state = "up"
    (again,) = await edge.outbound.pull(1, timeout=5)
    await edge.bridge.process([again])
    assert len(edge.link.sent) == 1


async def test_an_audit_trail_that_cannot_be_written_stops_the_batch(
    edge: Edge, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(entries: object) -> None:
        raise AuditWriteError("cannot write the audit trail: disk full")

    monkeypatch.setattr(edge.bridge.audit, "append", refuse)
    await edge.send("docs.parse", CLAIM, Rb_Class="internal")
    await edge.send("health.records", CLAIM)
    await edge.run()
    assert edge.link.sent == []  # nothing unaudited leaves
    assert edge.bus.published == []
    assert edge.outbound.messages == 2  # nothing lost either
    assert edge.bridge.metrics.audit_errors._value.get() == 1


async def reply_from_the_cloud(edge: Edge, reply_to: str, msg_id: str = "m-1") -> Envelope:
    token = edge.bridge.tokens.seal(ReplyRoute(reply_to, "docs.parse", msg_id))
    return Envelope(f"r-{msg_id}", "docs.parse", b'{"claim_id": "CLM-1"}', reply_token=token)


async def test_a_reply_is_acknowledged_only_once_nats_has_it_and_is_remembered(
    edge: Edge,
) -> None:
    envelope = await reply_from_the_cloud(edge, "_INBOX.desk.1")
    assert await edge.bridge.accept([envelope]) == [None]
    (reply,) = edge.bus.published
    assert reply.subject == "_INBOX.desk.1"
    assert edge.bus.flushes == 1
    assert [s.subject for s in edge.bridge.resender.recent.since(0)] == ["_INBOX.desk.1"]


@pytest.mark.parametrize(
    "headers",
    [{"X(y)": "v"}, {"Résumé": "v"}, {"X-Note": "a\r\nRb-Status: ok"}, {"X-Nul": "a\x00"}],
    ids=["bracket-in-name", "non-ascii-name", "crlf-in-value", "nul-in-value"],
)
async def test_a_reply_with_headers_nats_cannot_carry_is_refused_alone(
    edge: Edge, headers: dict[str, str]
) -> None:
    bad = await reply_from_the_cloud(edge, "_INBOX.desk.1", "m-1")
    bad = Envelope(
        bad.id, bad.capability, bad.payload, reply_token=bad.reply_token, headers=headers
    )
    good = await reply_from_the_cloud(edge, "_INBOX.desk.2", "m-2")
    answers = await edge.bridge.accept([bad, good])
    assert answers[1] is None
    assert answers[0] is not None
    assert answers[0].code == "bad-header"
    assert [p.subject for p in edge.bus.published] == ["_INBOX.desk.2"]
    (refused,) = [r for r in read_records(edge.audit_dir) if r["decision"] == "refused"]
    assert refused["reason"] == "bad-header"


@pytest.mark.parametrize(
    ("failure", "error", "published_first"),
    [
        ("fail_flush", TimeoutError(), ["_INBOX.desk.1", "_INBOX.desk.2"]),  # sent, unconfirmed
        ("fail_publish", OutboundBufferLimitError(), []),  # not taken at all
    ],
    ids=["not-confirmed", "not-taken"],
)
async def test_deliveries_nats_did_not_take_or_confirm_are_refused_so_the_cloud_sends_them_again(
    edge: Edge, failure: str, error: Exception, published_first: list[str]
) -> None:
    setattr(edge.bus, failure, error)
    envelopes = [await reply_from_the_cloud(edge, f"_INBOX.desk.{n}", f"m-{n}") for n in (1, 2)]
    answers = await edge.bridge.accept(envelopes)
    assert [answer.code if answer else None for answer in answers] == ["link-lost"] * 2
    assert [p.subject for p in edge.bus.published] == published_first
    setattr(edge.bus, failure, None)
    assert await edge.bridge.accept(envelopes) == [None, None]  # the same replies: delivered
    assert [p.subject for p in edge.bus.published][-2:] == ["_INBOX.desk.1", "_INBOX.desk.2"]


async def test_a_deny_notice_is_remembered_to_be_sent_again(edge: Edge) -> None:
    await edge.send("health.records", CLAIM, Rb_Reply_To="_INBOX.agent.1")
    await edge.run()
    (notice,) = edge.bridge.resender.recent.asked_again(["_INBOX.agent.1"])
    assert notice.headers[HEADER_STATUS] == "denied"
