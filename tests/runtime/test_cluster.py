"""The bridge on a NATS cluster: three copies of every stream and bucket it makes, a clear
refusal when there are fewer servers than copies, existing streams reported rather than changed,
and the flow going on while the server leading RB_OUT is killed and comes back."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import subprocess
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats
import orjson
import pytest
from nats.js import api
from nats.js.errors import APIError

from bridge.edge.tokens import SPENT_TOKENS_BUCKET
from bridge.runtime.streams import StreamConfigError
from bridge.up.cluster import Cluster
from bridge.up.ports import free_port
from cloud_agent import CloudAgent, CloudRequest
from edge_agent import Agent, Request
from tests.runtime.helpers import cloud_settings, spawn, stream_messages
from tests.runtime.world import World

pytestmark = pytest.mark.servers


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    made = Cluster(tmp_path / "cluster")
    try:
        await made.start()
        yield made
    finally:
        made.kill()


async def replicas(urls: list[str], stream: str) -> int:
    connection = await nats.connect(servers=urls)
    try:
        info = await connection.jetstream().stream_info(stream)
        return int(info.config.num_replicas or 1)
    finally:
        await connection.close()


async def test_every_stream_and_bucket_of_the_edge_has_three_copies_on_a_cluster(
    world: World, cluster: Cluster
) -> None:
    await world.start_gateway()
    await world.start_edge(nats={"servers": cluster.urls}, quarantine={"enabled": True})
    for stream in ("RB_OUT", "RB_QUARANTINE", f"KV_{SPENT_TOKENS_BUCKET}"):
        assert await replicas(cluster.urls, stream) == 3, stream


async def test_more_copies_than_servers_is_refused_at_start_by_name(world: World) -> None:
    await world.start_gateway()
    with pytest.raises(StreamConfigError, match="RB_OUT wants 3 replicas") as refused:
        await world.start_edge(nats={"url": world.edge_nats.url, "replicas": 3})
    assert "nats.replicas" in str(refused.value)


async def test_an_existing_stream_keeps_its_copies_and_is_reported(
    world: World, cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    connection = await nats.connect(servers=cluster.urls)
    await connection.jetstream().add_stream(
        api.StreamConfig(name="RB_OUT", subjects=["rb.out.>"], num_replicas=1)
    )
    await connection.close()
    await world.start_gateway()
    with caplog.at_level(logging.WARNING, logger="rbridge.streams"):
        await world.start_edge(nats={"servers": cluster.urls})
    assert await replicas(cluster.urls, "RB_OUT") == 1
    assert "stream RB_OUT has 1 replica(s) and the settings ask for 3" in caplog.text


async def ask_claim(desk: Agent, claim_id: str, *, timeout: float) -> str:
    """Ask the cloud parser about one claim through the bridge (its id, lower-cased, is the
    message id, so a retried ask is stored once); the claim id it answers with."""
    answer = await desk.ask_cloud(
        "docs.parse", {"claim_id": claim_id}, classification="internal", timeout=timeout,
        msg_id=claim_id.lower(),
    )  # fmt: skip
    return str(answer["claim_id"])


async def publish_until_stored(urls: list[str], first: int, last: int) -> None:
    """Publish each message until JetStream acknowledged it (the same id: stored once),
    riding out a leader election."""
    connection = await nats.connect(servers=urls, max_reconnect_attempts=-1)
    js = connection.jetstream()
    try:
        for number in range(first, last):
            while True:
                try:
                    await js.publish(
                        "rb.out.docs.parse",
                        orjson.dumps({"claim_id": f"H-{number}"}),
                        headers={"Rb-Class": "internal", "Nats-Msg-Id": f"h-{number}"},
                        timeout=2,
                    )
                    break
                except (APIError, TimeoutError, nats.errors.Error):
                    await asyncio.sleep(0.1)
    finally:
        await connection.close()


@pytest.mark.slow
async def test_the_flow_goes_on_while_the_server_leading_rb_out_is_killed(
    world: World, cluster: Cluster
) -> None:
    await world.start_gateway()
    edge = await world.start_edge(nats={"servers": cluster.urls})
    await edge.links["cloud-eu"].wait_up(20)
    await publish_until_stored(cluster.urls, 0, 100)
    connection = await nats.connect(servers=cluster.urls)
    leader = (await connection.jetstream().stream_info("RB_OUT")).cluster.leader  # type: ignore[union-attr]
    await connection.close()
    assert leader is not None
    killed = cluster.by_name(leader)
    sender = asyncio.create_task(publish_until_stored(cluster.urls, 100, 300))
    await asyncio.sleep(0.3)
    killed.kill()
    started = asyncio.get_running_loop().time()
    await sender
    await asyncio.to_thread(killed.start)

    async def all_stored() -> bool:
        cloud = await nats.connect(world.cloud_nats.url)
        try:
            info = await cloud.jetstream().stream_info("RB_IN")
            return int(info.state.messages) >= 300
        finally:
            await cloud.close()

    async with asyncio.timeout(120):
        while not await all_stored():
            await asyncio.sleep(0.2)
    print(
        f"\n{leader} killed: every message stored {asyncio.get_running_loop().time() - started:.1f} s later"
    )
    stored = await stream_messages(world.cloud_nats.url, "RB_IN")
    ids = [(message.headers or {})["Nats-Msg-Id"] for message in stored]
    assert sorted(ids) == sorted(f"plant-a/h-{n}" for n in range(300)), "lost or doubled"
    with contextlib.suppress(Exception):
        await edge.stop()


@pytest.mark.slow
@pytest.mark.timeout(300)
# nats-py leaves the socket of an attempt that timed out waiting for the frozen server's INFO
# to the garbage collector (a ResourceWarning from StreamWriter.__del__); nothing of ours.
@pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <function StreamWriter.__del__:pytest.PytestUnraisableExceptionWarning"
)
async def test_the_flow_goes_on_while_the_server_of_the_bridge_is_frozen(
    world: World, cluster: Cluster
) -> None:
    """A server that hangs rather than dies (its host frozen, a network cut without a reset)
    keeps its connections open and answers nothing: the bridge notices by its pings within
    seconds, not minutes, and goes on through another member."""
    frozen, *others = cluster.servers
    assert frozen.process is not None
    await world.start_gateway()
    edge = await world.start_edge(nats={"servers": [frozen.url]})
    await edge.links["cloud-eu"].wait_up(20)
    clock = asyncio.get_running_loop().time
    desk_urls = ",".join(server.url for server in others)
    # The frozen server may lead RB_OUT: its followers elect another after missed heartbeats,
    # which can take longer than the default failover_seconds.
    async with world.parser(), Agent("desk", nats_url=desk_urls, failover_seconds=60) as desk:
        assert await ask_claim(desk, "Q-0", timeout=30) == "Q-0"
        os.kill(frozen.process.pid, signal.SIGSTOP)
        try:
            started = clock()
            answers = await asyncio.gather(
                *(ask_claim(desk, f"Q-{n}", timeout=90) for n in range(1, 11))
            )
            print(
                f"\nthe bridge's server frozen: every ask answered {clock() - started:.1f} s later"
            )
        finally:
            os.kill(frozen.process.pid, signal.SIGCONT)
    assert answers == [f"Q-{n}" for n in range(1, 11)]


async def test_agents_take_a_cluster_as_a_list_of_urls(world: World, cluster: Cluster) -> None:
    from bridge.contract import AGENTS_BUCKET

    await world.start_gateway()
    await world.start_edge(nats={"servers": cluster.urls})
    async with Agent("desk", nats_url=",".join(cluster.urls)) as desk:
        msg_id = await desk.send_cloud("docs.parse", {"claim_id": "C-1"}, classification="internal")
    assert msg_id
    assert await replicas(cluster.urls, f"KV_{AGENTS_BUCKET}") == 3


async def test_a_stream_grows_from_one_copy_to_three_with_messages_waiting(
    cluster: Cluster,
) -> None:
    """The guide's procedure for moving from one server to three: the backlog survives."""
    connection = await nats.connect(servers=cluster.urls)
    js = connection.jetstream()
    try:
        await js.add_stream(api.StreamConfig(name="RB_OUT", subjects=["rb.out.>"], num_replicas=1))
        for number in range(500):
            while True:  # a stream just made may not take messages yet on a loaded machine
                try:
                    await js.publish(
                        "rb.out.docs.parse", b"{}", headers={"Nats-Msg-Id": f"w-{number}"}
                    )
                    break
                except (APIError, TimeoutError, nats.errors.Error):
                    await asyncio.sleep(0.1)
        info = await js.stream_info("RB_OUT")
        info.config.num_replicas = 3  # what `nats stream edit RB_OUT --replicas 3` sends
        await js.update_stream(info.config)

        async def grown() -> bool:
            current = await js.stream_info("RB_OUT")
            peers = current.cluster.replicas if current.cluster else None
            return len(peers or []) == 2 and all(peer.current for peer in peers or [])

        async with asyncio.timeout(60):
            while not await grown():
                await asyncio.sleep(0.2)
        assert (await js.stream_info("RB_OUT")).state.messages == 500
    finally:
        await connection.close()


@pytest.mark.parametrize("dies", ["the asker's server", "the answering agent's server"])
async def test_asks_in_flight_when_a_server_dies_are_answered_once(
    cluster: Cluster, dies: str
) -> None:
    """Agent to agent on a cluster: a request or an answer passing through a server as it dies
    is lost (core NATS keeps nothing); the asker sends it again and the answering agent runs it
    once. Each agent is on its own server first; one of the two servers is killed mid-flow."""
    runs: Counter[int] = Counter()
    victim, other, spare = cluster.urls
    asker_first, answerer_first = (
        (victim, other) if dies.startswith("the asker") else (other, victim)
    )
    pinned = {"dont_randomize": True}  # each agent on its first server until that one dies
    answerer = Agent("echo", nats_url=f"{answerer_first},{spare}", connect=pinned)

    @answerer.handle("work.echo")
    async def echo(request: Request) -> int:
        number: int = request.json()
        runs[number] += 1
        await asyncio.sleep(0.02)
        return number

    asker = Agent("desk", nats_url=f"{asker_first},{spare}", connect=pinned)
    async with answerer, asker:
        asked = []
        for number in range(400):
            asked.append(asyncio.create_task(asker.ask("work.echo", number, timeout=60)))
            if number == 200:
                next(server for server in cluster.servers if server.url == victim).kill()
            await asyncio.sleep(0.005)
        answers = await asyncio.gather(*asked)
    assert answers == list(range(400))
    assert set(runs.values()) == {1}, "an ask ran twice"


async def test_a_reply_published_while_the_askers_server_is_gone_reaches_it_once_it_is_back(
    world: World, cluster: Cluster
) -> None:
    """ask_cloud on a cluster: the cloud's reply is published by the edge bridge while the
    asking agent's server is dead and the agent not yet connected to another, so no one takes
    it (core NATS keeps nothing); the agent, once connected again, asks the bridge for it."""
    dies, bridges, spare = cluster.urls
    await world.start_gateway()
    edge = await world.start_edge(nats={"servers": [bridges]})
    await edge.links["cloud-eu"].wait_up(20)
    entered, release, away, delivered = (asyncio.Event() for _ in range(4))
    parser = CloudAgent("parser", nats_url=world.cloud_nats.url)

    @parser.capability("docs.parse")
    async def parse(request: CloudRequest) -> dict[str, Any]:
        entered.set()
        await release.wait()
        return {"claim_id": request.payload["claim_id"]}

    async def held_away() -> None:  # nats-py reconnects only once this returns
        away.set()
        async with asyncio.timeout(60):
            await delivered.wait()

    resender = edge.resender
    assert resender is not None
    pinned = {"dont_randomize": True, "disconnected_cb": held_away}
    async with parser, Agent("desk", nats_url=f"{dies},{spare}", connect=pinned) as desk:
        asking = asyncio.create_task(ask_claim(desk, "Q-1", timeout=60))
        async with asyncio.timeout(60):
            await entered.wait()
            next(server for server in cluster.servers if server.url == dies).kill()
            await away.wait()
            release.set()
            while not any(s.subject.startswith("_INBOX.desk.") for s in resender.recent.since(0)):
                assert not asking.done(), asking
                await asyncio.sleep(0.02)
        delivered.set()  # published to no one; now the desk connects to the spare server
        assert await asking == "Q-1"
    assert edge.metrics.sent_again.labels("asked")._value.get() == 1


@pytest.mark.slow
async def test_every_request_is_answered_while_the_server_leading_rb_in_is_killed(
    world: World, tmp_path: Path
) -> None:
    """The cloud side on three NATS servers: the gateway stores in RB_IN and forwards replies,
    the cloud agent consumes; the server leading RB_IN dies mid-flow and comes back."""
    cloud = Cluster(tmp_path / "cloud-cluster", name="cloud")
    await cloud.start()
    try:
        await world.start_gateway(nats={"servers": cloud.urls})
        edge = await world.start_edge()
        await edge.links["cloud-eu"].wait_up(20)
        seen: list[str] = []
        agent = world.parser(seen, nats_url=",".join(cloud.urls))
        await agent.start()
        try:
            assert await replicas(cloud.urls, "RB_IN") == 3
            async with Agent("desk", nats_url=world.edge_nats.url) as desk:

                async def ask(number: int) -> str:
                    return await ask_claim(desk, f"K-{number}", timeout=90)

                answers: list[str] = []
                answered_at: list[float] = []
                clock = asyncio.get_running_loop().time

                async def flow() -> None:  # a steady flow: five requests at a time
                    for first in range(0, 200, 5):
                        batch = await asyncio.gather(*(ask(n) for n in range(first, first + 5)))
                        answers.extend(batch)
                        answered_at.append(clock())

                sender = asyncio.create_task(flow())
                async with asyncio.timeout(60):
                    while len(answers) < 50:
                        await asyncio.sleep(0.02)
                connection = await nats.connect(servers=cloud.urls)
                info = await connection.jetstream().stream_info("RB_IN")
                await connection.close()
                leader = info.cluster.leader if info.cluster else None
                assert leader is not None
                cloud.by_name(leader).kill()
                killed_at, answered_before = clock(), len(answers)
                await sender
                await asyncio.to_thread(cloud.by_name(leader).start)
                assert len(answers) > answered_before + 50, "the kill did not happen mid-flow"
                after = [t for t in answered_at if t > killed_at]
                recovered = max(b - a for a, b in itertools.pairwise([killed_at, *after]))
        finally:
            await agent.stop()
        print(f"\n{leader} killed: longest wait for an answer after it {recovered:.1f} s")
        assert sorted(answers) == sorted(f"K-{n}" for n in range(200))
    finally:
        cloud.kill()


@pytest.mark.slow
@pytest.mark.timeout(900)  # four kills and restarts of processes: minutes on a loaded machine
async def test_losing_a_server_each_side_an_edge_bridge_and_a_gateway_in_turn(
    world: World, cluster: Cluster, tmp_path: Path
) -> None:
    """Both sides on three-node clusters, two edge bridges sharing RB_OUT and two gateways, each
    edge bridge with one gateway in use and the other as its standby, all as processes. Under a
    steady flow of requests, SIGKILL and restart in turn the edge server leading RB_OUT, the
    cloud server leading RB_IN, one edge bridge and one gateway. Every request is answered once
    and RB_IN stored each once (counted by message id); the recovery after each is printed."""
    cloud = Cluster(tmp_path / "cloud-cluster", name="cloud")
    await cloud.start()
    processes: dict[str, subprocess.Popen[bytes]] = {}
    cleanup = contextlib.AsyncExitStack()
    try:
        # A consumer that never acks keeps every stored request in RB_IN, to count them.
        connection = await nats.connect(servers=cloud.urls)
        cleanup.push_async_callback(connection.close)
        ports = [free_port(), free_port()]
        commands: dict[str, list[str]] = {}
        for index, port in enumerate(ports):
            settings = cloud_settings(
                world.pki, cloud.urls[0], name=f"gateway-{index}", listen=f"127.0.0.1:{port}",
                nats={"servers": cloud.urls},
            )  # fmt: skip
            commands[f"gateway-{index}"] = [
                "cloud", "--config", str(world.write_config(f"gateway-{index}", settings))
            ]  # fmt: skip
        for index in range(2):
            mine, other = ports[index], ports[1 - index]
            destination = {"address": f"localhost:{mine}", "standby": [f"localhost:{other}"]}
            edge_settings = world.edge_settings(
                destinations={"cloud-eu": destination, "cloud-us": destination},
                nats={"servers": cluster.urls}, instance=f"edge-{index}", http="127.0.0.1:0",
                audit={"dir": str(tmp_path / f"audit-{index}")},
                state_dir=str(tmp_path / "edge-state"),
            )  # fmt: skip
            commands[f"edge-{index}"] = [
                "edge", "--config", str(world.write_config(f"edge-{index}", edge_settings))
            ]  # fmt: skip
        ready = {"gateway": "rbridge cloud: link on", "edge": "rbridge edge: site"}

        async def start(name: str) -> None:
            log = tmp_path / f"{name}.log"
            offset = log.stat().st_size if log.exists() else 0
            processes[name] = spawn(commands[name], log)
            line = ready[name.split("-")[0]]
            async with asyncio.timeout(60):
                while not log.exists() or line not in log.read_text()[offset:]:
                    assert processes[name].poll() is None, log.read_text()[-3000:]
                    await asyncio.sleep(0.05)

        for name in commands:
            await start(name)
        await connection.jetstream().add_consumer(
            "RB_IN", api.ConsumerConfig(durable_name="count", ack_policy=api.AckPolicy.EXPLICIT)
        )

        seen: list[str] = []
        agent = world.parser(seen, nats_url=",".join(cloud.urls))
        await agent.start()
        cleanup.push_async_callback(agent.stop)
        clock = asyncio.get_running_loop().time
        answers: list[str] = []
        answered_at: list[float] = []
        async with Agent("desk", nats_url=",".join(cluster.urls)) as desk:

            async def ask(number: int) -> str:
                return await ask_claim(desk, f"Q-{number}", timeout=120)

            done = asyncio.Event()
            asked = 0

            async def flow() -> None:  # a steady flow, five requests at a time, until done
                nonlocal asked
                while not done.is_set():
                    first, asked = asked, asked + 5
                    answers.extend(await asyncio.gather(*(ask(n) for n in range(first, asked))))
                    answered_at.append(clock())

            async def leader(urls: list[str], stream: str) -> str:
                probe = await nats.connect(servers=urls)
                try:
                    info = await probe.jetstream().stream_info(stream)
                finally:
                    await probe.close()
                assert info.cluster is not None
                assert info.cluster.leader is not None
                return info.cluster.leader

            sender = asyncio.create_task(flow())
            try:
                recovered: dict[str, float] = {}
                victims = [
                    "edge NATS (RB_OUT leader)", "cloud NATS (RB_IN leader)", "edge-0", "gateway-1"
                ]  # fmt: skip
                for step, victim in enumerate(victims, start=1):
                    async with asyncio.timeout(120):
                        while len(answers) < step * 80:
                            assert not sender.done(), (victim, len(answers), sender)
                            await asyncio.sleep(0.02)
                    killed_at, before = clock(), len(answers)
                    if victim.startswith("edge NATS"):
                        server = cluster.by_name(await leader(cluster.urls, "RB_OUT"))
                        server.kill()
                    elif victim.startswith("cloud NATS"):
                        server = cloud.by_name(await leader(cloud.urls, "RB_IN"))
                        server.kill()
                    else:
                        os.killpg(processes[victim].pid, signal.SIGKILL)
                        processes[victim].wait()
                    async with asyncio.timeout(120):  # the flow goes on without it...
                        while len(answers) < before + 25:
                            assert not sender.done(), (victim, before, len(answers), sender)
                            await asyncio.sleep(0.02)
                    after = [t for t in answered_at if t > killed_at][:5]
                    recovered[victim] = max(
                        b - a for a, b in itertools.pairwise([killed_at, *after])
                    )
                    if victim.startswith(("edge NATS", "cloud NATS")):  # ...and it comes back
                        await asyncio.to_thread(server.start)
                    else:
                        await start(victim)
                done.set()
                await sender
            finally:  # on a failure, before the desk closes
                sender.cancel()
                await asyncio.gather(sender, return_exceptions=True)
        print()
        for victim, seconds in recovered.items():
            print(f"{victim} killed: the flow went on after {seconds:.1f} s at most")
        assert sorted(answers) == sorted(f"Q-{n}" for n in range(asked)), "lost or doubled"
        stored = await stream_messages(cloud.urls[0], "RB_IN")
        ids = [(message.headers or {})["Nats-Msg-Id"] for message in stored]
        assert len(ids) == len(set(ids)) == asked, "RB_IN stored a request twice or lost one"
    except BaseException:  # what the bridges and gateways said, for whoever reads the failure
        for log in sorted(tmp_path.glob("*.log")):
            print(f"--- {log.name}\n{log.read_text(errors='replace')[-4000:]}")
        raise
    finally:
        await cleanup.aclose()
        for process in processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        cloud.kill()
