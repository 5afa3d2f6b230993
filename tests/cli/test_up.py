"""``rbridge up``: the whole system in one command, and nothing left running afterwards."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from concurrent import futures
from pathlib import Path

import grpc
import orjson
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def rbridge_up(*arguments: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bridge.cli.main", "up", *arguments],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def survivors(marker: Path) -> list[str]:
    """Processes whose command line mentions ``marker`` (our state directory)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(marker) in command:
            found.append(f"{entry.name}: {command}")
    return found


def wait_for_no_survivors(marker: Path, seconds: float = 10) -> list[str]:
    deadline = time.monotonic() + seconds
    while (left := survivors(marker)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def wait_until_up(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    seen = ""
    for line in process.stdout:
        seen += line
        if "Residency Bridge is up" in line:
            return seen
    raise AssertionError(f"rbridge up never came up:\n{seen}")


def test_once_answers_every_claim_denies_every_health_record_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    state, summary_file = tmp_path / "state", tmp_path / "summary.json"
    process = rbridge_up(
        "--once", "--claims", "30", "--state-dir", str(state), "--json", str(summary_file)
    )
    output, _ = process.communicate(timeout=240)
    assert process.returncode == 0, output
    summary = orjson.loads(summary_file.read_bytes())
    assert summary["ok"] is True
    assert (summary["sent"], summary["claims"], summary["replies"], summary["reidentified"]) == (
        30,
        27,
        27,
        27,
    )
    assert summary["denied_by_rule"] == {"health-data-stays-home": 3}
    assert summary["edge"]["denied_by_rule"] == {"health-data-stays-home": 3}
    assert summary["edge"]["allowed"] == 2 * 27  # docs.parse and claims.triage per claim
    assert summary["edge"]["transforms"]["tokenize"] == 27
    assert summary["errors"] == {}
    assert summary["audit"]["verified"] is True
    assert "as the cloud saw it" in output
    assert wait_for_no_survivors(state) == []


def test_ctrl_c_stops_everything_cleanly(tmp_path: Path) -> None:
    state = tmp_path / "state"
    process = rbridge_up(
        "--state-dir", str(state), "--rate", "20", "--json", str(tmp_path / "s.json")
    )
    try:
        wait_until_up(process)
        assert len(survivors(state)) >= 5  # two NATS servers, two gateways, the edge bridge
        time.sleep(2)
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, output
    summary = orjson.loads((tmp_path / "s.json").read_bytes())
    assert summary["interrupted"] is True
    assert summary["replies"] > 0
    assert summary["audit"]["verified"] is True
    assert wait_for_no_survivors(state) == []


def test_a_killed_rbridge_up_takes_its_children_with_it(tmp_path: Path) -> None:
    state = tmp_path / "state"
    process = rbridge_up("--state-dir", str(state), "--rate", "5")
    try:
        wait_until_up(process)
        assert survivors(state)
        process.kill()
        process.wait(10)
    finally:
        process.kill()
        if process.stdout is not None:
            process.stdout.close()
    assert wait_for_no_survivors(state) == []


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--rate", "0"], "must be greater than 0"),
        (["--claims", "many"], "is not a number"),
        (["--policy", "/nonexistent/policy.yaml"], "policy file not found"),
        (["--otlp-endpoint", "127.0.0.1:4317"], "expected http://host:port"),
    ],
)
def test_bad_arguments_are_one_line_usage_errors(arguments: list[str], message: str) -> None:
    process = rbridge_up("--once", *arguments)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 2
    assert message in output
    assert "Traceback" not in output


def test_a_state_dir_it_did_not_make_is_refused(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    process = rbridge_up("--once", "--state-dir", str(tmp_path))
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 2
    assert "was not made by 'rbridge up'" in output
    assert (tmp_path / "precious.txt").read_text() == "keep me"


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP trace receiver: which services sent spans, and how many."""

    def __init__(self) -> None:
        self.spans: Counter[str] = Counter()

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: object
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        for resource in request.resource_spans:
            service = next(
                a.value.string_value
                for a in resource.resource.attributes
                if a.key == "service.name"
            )
            self.spans[service] += sum(len(scope.spans) for scope in resource.scope_spans)
        return trace_service_pb2.ExportTraceServiceResponse()


def test_traces_go_to_the_collector_it_is_given(tmp_path: Path) -> None:
    receiver = Receiver()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        process = rbridge_up(
            "--once", "--claims", "5", "--state-dir", str(tmp_path / "state"),
            "--otlp-endpoint", endpoint,
        )  # fmt: skip
        output, _ = process.communicate(timeout=240)
        assert process.returncode == 0, output
        assert f"traces: {endpoint} (OTLP)" in output
    finally:
        server.stop(5).wait()
    # The runtimes export on their way out, the example agents when rbridge up ends.
    assert {"rbridge-edge", "rbridge-gateway", "rbridge-up-agents"} <= receiver.spans.keys()


def _pid(shown: str, label: str) -> int:
    match = re.search(rf"{re.escape(label)}\b.*?\(pid (\d+)\)", shown, re.S)
    assert match is not None, f"no pid for {label} in:\n{shown}"
    return int(match.group(1))


@pytest.mark.timeout(600)  # three clusters' worth of processes start and die: minutes when loaded
def test_ha_answers_every_claim_once_while_servers_bridges_and_gateways_die(
    tmp_path: Path,
) -> None:
    """`rbridge up --ha`: kill one NATS server on each side, one of the two edge bridges and the
    gateway the other edge bridge uses; every claim is still answered once, every expected deny
    happens, and both audit trails verify."""
    state, summary_file = tmp_path / "state", tmp_path / "summary.json"
    process = rbridge_up(
        "--ha", "--once", "--claims", "150", "--rate", "10", "--state-dir", str(state),
        "--json", str(summary_file),
    )  # fmt: skip
    try:
        shown = wait_until_up(process)
        assert process.stdout is not None
        for line in process.stdout:
            shown += line
            if "Kill any one" in line:
                break
        victims = [
            _pid(shown, "edge bridge a"),
            _pid(shown, "EU gateway b"),  # the gateway edge bridge b uses: it moves to a
            _pid(shown, "edge-0"),
            _pid(shown, "cloud-0"),
        ]
        trails = [state / "audit" / copy / "audit.jsonl" for copy in ("a", "b")]
        deadline = time.monotonic() + 120
        # Kill once claims are flowing (about 40 decided; audit records are about 0.5 KB).
        while sum(trail.stat().st_size for trail in trails if trail.exists()) < 20_000:
            assert time.monotonic() < deadline, shown
            time.sleep(0.1)
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        output, _ = process.communicate(timeout=300)
    finally:
        process.kill()
        if process.stdout is not None:
            process.stdout.close()
    assert process.returncode == 0, shown + output
    summary = orjson.loads(summary_file.read_bytes())
    assert summary["ok"] is True, summary
    assert summary["replies"] == summary["claims"] == summary["reidentified"]
    assert summary["denied_by_rule"] == {"health-data-stays-home": summary["denies_expected"]}
    assert summary["audit"]["verified"] is True
    assert wait_for_no_survivors(state) == []
