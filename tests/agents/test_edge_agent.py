"""The on-prem agent SDK against a real nats-server."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import nats
import orjson
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

import cloud_agent
import edge_agent
from bridge.natsserver import NatsServer
from edge_agent import (
    Agent,
    DelegationFailed,
    HandlerFailed,
    Request,
    TimedOut,
    Unavailable,
    agent_statuses,
)
from tests.eventually import eventually

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def agent_process(url: str, instance: str) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.agents.agent_process", url, instance],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
        yield process
    finally:
        process.kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()


async def test_two_processes_of_one_agent_share_its_work(nats_server: NatsServer) -> None:
    """Handlers of one agent name form a queue group: each request is answered once, by either."""
    with agent_process(nats_server.url, "one"), agent_process(nats_server.url, "two"):
        async with Agent("client", nats_url=nats_server.url) as client:
            answers = await asyncio.gather(
                *(client.ask("work.echo", {"n": n}, timeout=10) for n in range(200))
            )
    assert sorted(answer["n"] for answer in answers) == list(range(200))
    by_instance = Counter(answer["instance"] for answer in answers)
    assert set(by_instance) == {"one", "two"}, by_instance


async def test_a_failing_handler_is_retried_then_dead_lettered_and_the_agent_lives_on(
    nats_server: NatsServer,
) -> None:
    agent = Agent("flaky", nats_url=nats_server.url, max_attempts=3, retry_delay=0.01)
    calls: list[int] = []

    @agent.handle("work.fail")
    async def fail(request: Request) -> None:
        calls.append(request.attempt)
        raise ValueError("cannot parse the claim")

    @agent.handle("work.ok")
    async def ok(request: Request) -> dict[str, bool]:
        return {"ok": True}

    watcher = await nats.connect(nats_server.url)
    dead: asyncio.Queue[Msg] = asyncio.Queue()

    async def collect(message: Msg) -> None:
        await dead.put(message)

    await watcher.subscribe("rb.agents.dead.flaky", cb=collect)
    async with agent, Agent("client", nats_url=nats_server.url) as client:
        with pytest.raises(HandlerFailed, match="ValueError: cannot parse the claim"):
            await client.ask("work.fail", {"claim": 1}, timeout=10)
        assert await client.ask("work.ok", {}) == {"ok": True}
        letter = await asyncio.wait_for(dead.get(), 5)
    assert calls == [1, 2, 3]
    assert letter.data == b'{"claim":1}'
    headers = letter.headers or {}
    assert headers["Agent-Error"] == "ValueError: cannot parse the claim"
    assert (headers["Agent-Subject"], headers["Agent-Attempts"]) == ("work.fail", "3")
    assert agent.stats.dead_lettered == 1
    await watcher.close()


async def test_timeouts_and_missing_responders_are_typed(nats_server: NatsServer) -> None:
    agent = Agent("slow", nats_url=nats_server.url)

    @agent.handle("work.slow")
    async def slow(request: Request) -> None:
        await asyncio.sleep(5)

    client = Agent("client", nats_url=nats_server.url, failover_seconds=0.5)
    async with agent, client:
        with pytest.raises(TimedOut, match=r"no answer on work.slow within 0.3 s"):
            await client.ask("work.slow", {}, timeout=0.3)
        with pytest.raises(Unavailable, match="no agent serves this subject"):
            await client.ask("work.nobody", {}, timeout=2)
        # No bridge on this NATS: there is no RB_OUT stream to hand a message to.
        with pytest.raises(Unavailable, match="no RB_OUT stream"):
            await client.send_cloud("docs.parse", {"a": 1})
        with pytest.raises(ValueError, match="classification"):
            await client.send_cloud("docs.parse", {"a": 1}, classification="secret")
    with pytest.raises(Unavailable, match="cannot connect to NATS"):
        await Agent("lost", nats_url="nats://127.0.0.1:1", connect_timeout=1).start()


async def test_delegation_runs_sub_tasks_concurrently_and_reports_each_failure(
    nats_server: NatsServer,
) -> None:
    """A compliance report: data retrieval, policy validation and formatting by three agents."""
    agents = [Agent(name, nats_url=nats_server.url) for name in ("data", "checks", "layout")]
    running = 0
    most = 0

    async def work(request: Request) -> dict[str, str]:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.2)
        running -= 1
        if request.json().get("fail"):
            raise RuntimeError("validation service down")
        return {"done": request.subject}

    for agent, subject in zip(
        agents, ("reports.data", "reports.validate", "reports.format"), strict=True
    ):
        agent.handle(subject)(work)
        await agent.start()
    try:
        async with Agent("reporter", nats_url=nats_server.url, max_attempts=1) as reporter:
            answers = await reporter.delegate(
                {
                    "data": ("reports.data", {}),
                    "checks": ("reports.validate", {}),
                    "layout": ("reports.format", {}),
                }
            )
            assert answers == {
                "data": {"done": "reports.data"},
                "checks": {"done": "reports.validate"},
                "layout": {"done": "reports.format"},
            }
            assert most == 3
            with pytest.raises(DelegationFailed) as failed:
                await reporter.delegate(
                    {"data": ("reports.data", {}), "checks": ("reports.validate", {"fail": 1})}
                )
            assert failed.value.answers == {"data": {"done": "reports.data"}}
            assert isinstance(failed.value.errors["checks"], HandlerFailed)
    finally:
        for agent in agents:
            await agent.stop()


async def test_heartbeats_show_live_stopped_and_silent_agents(nats_server: NatsServer) -> None:
    """Supervision: a live agent, one that stopped cleanly, one killed (silent after 3 beats)."""
    watcher = await nats.connect(nats_server.url)
    try:
        await watch_heartbeats(nats_server, watcher)
    finally:
        await watcher.close()


async def watch_heartbeats(nats_server: NatsServer, watcher: Client) -> None:
    stopped = Agent("reporter", nats_url=nats_server.url, heartbeat_seconds=0.2)

    @stopped.handle("reports.run")
    async def run(request: Request) -> None:
        return None

    await stopped.start()
    await stopped.stop()
    with agent_process(nats_server.url, "doomed") as doomed:
        async with Agent("fraud-check", nats_url=nats_server.url, heartbeat_seconds=0.2):
            expected = {("echo", "live"), ("fraud-check", "live"), ("reporter", "stopped")}
            states: set[tuple[str, str]] = set()
            async with asyncio.timeout(30):  # the first beats may take a moment on a busy host
                while states != expected:
                    await asyncio.sleep(0.1)
                    states = {(s.agent, s.state) for s in await agent_statuses(watcher)}
            assert states == expected
            doomed.kill()
            doomed.wait()
            statuses = {s.agent: s for s in await agent_statuses(watcher)}
            async with asyncio.timeout(30):
                # A listing under load may miss a key now and then: wait for a full one.
                while "echo" not in statuses or statuses["echo"].state != "silent":
                    await asyncio.sleep(0.1)
                    statuses = {s.agent: s for s in await agent_statuses(watcher)}
            assert statuses["echo"].subjects == ("work.echo",)
            assert statuses["fraud-check"].state == "live"


def test_the_public_surface_is_locked() -> None:
    """What the SDKs export is their contract: change it on purpose, here and in the docs."""
    assert set(edge_agent.__all__) == {
        "CLASSIFICATIONS", "HEADER_AGENT_ERROR", "HEADER_CLASS", "HEADER_MSG_ID",
        "HEADER_REASON", "HEADER_REPLY_TO", "HEADER_RULE", "HEADER_STATUS", "Agent",
        "AgentError", "AgentStats", "AgentStatus", "DelegationFailed", "Denied", "Handler",
        "HandlerFailed", "Request", "TimedOut", "Unavailable", "agent_statuses",
        "dead_letter_subject", "outbound_subject",
    }  # fmt: skip
    assert set(cloud_agent.__all__) == {
        "HEADER_AGENT_ERROR", "HEADER_CLASS", "HEADER_POLICY", "HEADER_RB_MSG_ID",
        "HEADER_REPLY_TOKEN", "HEADER_RULE", "HEADER_SITE", "HEADER_TO", "CapabilityHandler",
        "CloudAgent", "CloudAgentStats", "CloudAgentUnavailable", "CloudRequest", "Digest", "Token",
        "dead_letter_subject", "inbound_subject", "reply_subject", "tokens_in", "with_pseudonyms",
    }  # fmt: skip
    for module in (edge_agent, cloud_agent):
        for name in module.__all__:
            assert getattr(module, name) is not None


@pytest.mark.parametrize("name", ["", "a.b", "a*", "with space"])
def test_agent_names_are_one_subject_token(name: str) -> None:
    with pytest.raises(ValueError, match="one subject token"):
        Agent(name)


async def test_rbridge_agents_lists_them_and_fails_when_one_went_silent(
    nats_server: NatsServer,
) -> None:
    def agents_command(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bridge.cli.main", "agents", "--nats", nats_server.url, *extra],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )

    empty = await asyncio.to_thread(agents_command)
    assert (empty.returncode, empty.stdout) == (
        0,
        "no agents have announced themselves on this NATS\n",
    )
    with agent_process(nats_server.url, "doomed") as doomed:
        listed = await asyncio.to_thread(agents_command)
        assert listed.returncode == 0, listed.stderr
        assert "echo" in listed.stdout
        assert "live" in listed.stdout
        assert "work.echo" in listed.stdout
        doomed.kill()
        doomed.wait()

    async def gone_silent() -> bool:  # its last heartbeat ages past the silence limit
        return (await asyncio.to_thread(agents_command, "--json")).returncode == 1

    await eventually(gone_silent, "the killed agent listed as silent", timeout=30)
    silent = await asyncio.to_thread(agents_command, "--json")
    (line,) = silent.stdout.splitlines()
    assert orjson.loads(line)["state"] == "silent"
    unreachable = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "bridge.cli.main", "agents", "--nats", "nats://127.0.0.1:1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert unreachable.returncode == 1
    assert unreachable.stderr.startswith("rbridge agents: error: cannot connect to NATS")
    assert "Traceback" not in unreachable.stderr


async def test_stopping_heartbeats_survives_a_lost_cancellation() -> None:
    """nats-py's publish can swallow a cancellation (wait_for on 3.11); stop() still ends."""
    from edge_agent.heartbeat import Heartbeat

    class StubbornBucket:
        def __init__(self) -> None:
            self.puts: list[bytes] = []
            self.swallowed = 0

        async def put(self, key: str, value: bytes) -> int:
            self.puts.append(value)
            try:
                await asyncio.sleep(0.05)
            except asyncio.CancelledError:
                self.swallowed += 1  # lost, as inside nats-py's request
            return len(self.puts)

    heartbeat = Heartbeat(Agent("beating"), interval=0.01)
    bucket = StubbornBucket()
    heartbeat._bucket = bucket  # type: ignore[assignment]
    heartbeat._task = asyncio.create_task(heartbeat._loop())
    await asyncio.sleep(0.2)
    await asyncio.wait_for(heartbeat.stop(), 15)
    assert heartbeat._task.done()
    assert bucket.swallowed >= 1
    assert orjson.loads(bucket.puts[-1])["stopped"] is True


async def test_asks_and_sends_ride_out_a_moment_without_responder_or_stream(
    nats_server: NatsServer,
) -> None:
    """What a cluster's failover looks like to an agent: nobody answers a subject for a moment,
    RB_OUT has no leader for a moment. Within ``failover_seconds`` both go through, once."""
    client = Agent("client", nats_url=nats_server.url, failover_seconds=10)
    late = Agent("late", nats_url=nats_server.url)

    @late.handle("work.late")
    async def answer(request: Request) -> dict[str, bool]:
        return {"ok": True}

    async def after_a_moment() -> None:
        await asyncio.sleep(0.5)  # the asks and sends below are already being retried
        await late.start()
        stream = await late.nc.jetstream().add_stream(name="RB_OUT", subjects=["rb.out.>"])
        assert stream.config.name == "RB_OUT"

    async with client:
        helper = asyncio.create_task(after_a_moment())
        answered, msg_id = await asyncio.gather(
            client.ask("work.late", {}, timeout=10),
            client.send_cloud("docs.parse", {"a": 1}, msg_id="once-1"),
        )
        await helper
        assert answered == {"ok": True}
        info = await client.nc.jetstream().stream_info("RB_OUT")
        assert (msg_id, info.state.messages) == ("once-1", 1)
    await late.stop()
