"""Traces: one claim from an on-prem agent through the cloud and back is one trace, every hop
a span whose parent is the hop before, and no value of the claim in anything exported."""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from collections.abc import AsyncIterator
from typing import Any

import grpc
import orjson
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from bridge import tracing
from bridge.runtime.logs import JsonFormatter
from edge_agent import Agent
from edge_agent.examples.samples import claim
from tests.runtime.world import World


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP trace receiver in the test process: keeps every export request's bytes."""

    def __init__(self) -> None:
        self.raw: list[bytes] = []

    async def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self.raw.append(request.SerializeToString())
        return trace_service_pb2.ExportTraceServiceResponse()

    def spans(self) -> list[Any]:
        found: list[Any] = []
        for raw in self.raw:
            request = trace_service_pb2.ExportTraceServiceRequest.FromString(raw)
            for resource in request.resource_spans:
                for scope in resource.scope_spans:
                    found.extend(scope.spans)
        return found


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    keeper = Receiver()
    server = grpc.aio.server()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(keeper, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    assert tracing.configure("rbridge-test", f"http://127.0.0.1:{port}", 1.0) is not None
    try:
        yield keeper
    finally:
        await asyncio.to_thread(tracing.shutdown)
        await server.stop(0)


CHAIN = [
    "ask_cloud docs.parse",  # the on-prem agent
    "send_cloud docs.parse",
    "rbridge.decide",  # the edge bridge
    "rbridge.link.send",
    "rbridge.store",  # the gateway
    "handle docs.parse",  # the cloud agent
    "rbridge.reply.forward",  # the gateway
    "rbridge.reidentify",  # the edge bridge
]


async def test_one_claim_is_one_trace_through_every_hop_and_carries_no_value(
    world: World, receiver: Receiver
) -> None:
    await world.start_linked()
    agent = world.parser()
    await agent.start()
    sent = claim(1, random.Random(3))
    try:
        async with Agent("desk", nats_url=world.edge_nats.url) as desk:
            answer = await desk.ask_cloud("docs.parse", sent, classification="internal")
    finally:
        await agent.stop()
    assert answer["claim_id"] == sent["claim_id"]
    # The exporter's thread calls the receiver on this event loop: never block the loop on it.
    await asyncio.to_thread(tracing.flush)
    spans = receiver.spans()
    (root,) = [s for s in spans if s.name == "ask_cloud docs.parse"]
    trace = [s for s in spans if s.trace_id == root.trace_id]
    by_name = {s.name: s for s in trace}
    assert set(CHAIN) <= by_name.keys(), sorted(by_name)
    assert root.parent_span_id == b""
    for parent, child in itertools.pairwise(CHAIN):
        assert by_name[child].parent_span_id == by_name[parent].span_id, f"{child} <- {parent}"
    decided = {a.key: a.value for a in by_name["rbridge.decide"].attributes}
    assert decided["rbridge.rule"].string_value == "claim-documents-to-eu-parser"
    assert decided["rbridge.verdict"].string_value == "allow"
    assert decided["rbridge.transforms.tokenize"].int_value >= 1
    exported = b"".join(receiver.raw)
    canaries = [
        sent["claimant"]["name"], sent["claimant"]["ssn"], sent["policy_number"],
        sent["notes"].split("reached on ")[1].split(" or ")[0],  # the phone number
        sent["notes"].split(" or ")[1].split(" after")[0],  # the e-mail address
    ]  # fmt: skip
    for canary in canaries:
        assert canary.encode() not in exported, "a value of the claim reached a trace"


def test_a_log_line_in_a_span_carries_its_trace_and_span_ids(receiver: Receiver) -> None:
    with tracing.span("work") as current:
        assert current is not None
        record = logging.LogRecord("rbridge.x", logging.INFO, __file__, 1, "did it", None, None)
        line = orjson.loads(JsonFormatter().format(record))
        context = current.get_span_context()
    assert line["trace_id"] == f"{context.trace_id:032x}"
    assert line["span_id"] == f"{context.span_id:016x}"


def test_off_by_default_nothing_is_recorded_or_sent() -> None:
    assert not tracing.enabled()
    headers: dict[str, str] = {}
    with tracing.span("nothing", headers) as current:
        tracing.inject(headers)
    assert current is None
    assert headers == {}
    assert tracing.start("x") is None
    assert tracing.log_ids() is None
