"""Policy decision speed on a reference 1 KiB claim, against orjson parse+dump of the same bytes.

Run: .venv/bin/python -m benchmarks.bench_policy [--iterations N] [--repeats R]

Prints microseconds per full decision (parse, rule match, four transforms, serialise, leak guard)
for canonical input (what the SDKs send) and for pretty-printed input (which also takes the
duplicate-key re-check), the cost of orjson parse+dump alone, and the ratios to the targets:
<= 20 us per decision on one core, and <= 10x the parse+dump. Then the adversarial lines:
192 KB of date-like notes masked and guarded (linear time: well under a second), and the same
claim with its notes written in fullwidth digits and invisible characters (the slow path of
the normalised view). Last, one decision made after 50 ms asleep, as a request at a low rate
meets the process, against the loop's figure.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import orjson

from bridge.policy import Engine, MemoryKeyRing, Message, load_policy_file

ROOT = Path(__file__).resolve().parent.parent
TARGET_US = 20.0
TARGET_RATIO = 10.0
TARGET_ADVERSARIAL_S = 1.0
COLD_SAMPLES = 40
COLD_SLEEP = 0.05

NOTES = (
    "Rear bumper and tail light damaged while the vehicle was parked outside the office on "
    "2026-10-03 between 09:00 and 17:30. The claimant noticed the damage on return and took six "
    "photos, which are attached. A witness left a note under the wiper with a registration "
    "number; the claimant has passed it on. The garage estimate is EUR 2,450.00 including "
    "paint and labour, valid for 30 days. The claimant asks to be contacted on +44 20 7946 0958 "
    "or at jane.doe@example.com after 5pm on weekdays, and prefers e-mail. The courtesy car "
    "was declined. No injuries were reported and the police were not called. Excess is EUR 250."
)


def reference_claim() -> dict[str, object]:
    return {
        "claim_id": "CLM-2026-004211",
        "policy_number": "PN-88213377",
        "submitted": "2026-10-04T09:12:00Z",
        "claimant": {"name": "Jane Doe", "ssn": "123-45-6789", "date_of_birth": "1984-02-29"},
        "vehicle": {"make": "Volvo", "model": "V60", "year": 2021, "colour": "silver"},
        "incident": {"date": "2026-10-03", "location": "car park", "amount_claimed": 2450.0},
        "attachments": [{"kind": "photo", "count": 6}, {"kind": "estimate", "pages": 2}],
        "notes": NOTES,
    }


def per_call_us(function: Callable[[], object], iterations: int, repeats: int) -> float:
    """Median over ``repeats`` runs of the mean time per call, in microseconds."""
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(iterations):
            function()
        samples.append((time.perf_counter() - started) / iterations * 1e6)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=7)
    arguments = parser.parse_args()

    loaded = load_policy_file(ROOT / "policies" / "claims.yaml")
    engine = Engine(loaded.policy, MemoryKeyRing.ephemeral(loaded.policy.spec.keys))
    document = reference_claim()
    canonical = orjson.dumps(document)
    pretty = orjson.dumps(document, option=orjson.OPT_INDENT_2)
    headers = {"Rb-Class": "confidential"}
    canonical_message = Message("docs.parse", canonical, headers)
    pretty_message = Message("docs.parse", pretty, headers)

    for message in (canonical_message, pretty_message):
        decision = engine.evaluate(message)
        assert decision.allowed, decision.reason
        assert [t.places for t in decision.transforms] == [1, 1, 1, 1], decision.transforms
        assert decision.payload is not None
        assert b"123-45-6789" not in decision.payload
        assert b"jane.doe@example.com" not in decision.payload

    baseline = per_call_us(
        lambda: orjson.dumps(orjson.loads(canonical)), arguments.iterations, arguments.repeats
    )
    fast = per_call_us(
        lambda: engine.evaluate(canonical_message), arguments.iterations, arguments.repeats
    )
    slow = per_call_us(
        lambda: engine.evaluate(pretty_message), arguments.iterations, arguments.repeats
    )

    print(f"reference claim: {len(canonical)} bytes canonical, {len(pretty)} bytes pretty-printed")
    print(f"orjson parse+dump (baseline)         {baseline:8.2f} us")
    for label, value in (
        ("decision, canonical input", fast),
        ("decision, pretty-printed input", slow),
    ):
        print(
            f"{label:<36} {value:8.2f} us  {1e6 / value:9,.0f}/s  "
            f"{value / baseline:5.1f}x baseline  "
            f"target {TARGET_US:.0f} us: {'met' if value <= TARGET_US else 'MISSED'}, "
            f"{TARGET_RATIO:.0f}x: {'met' if value / baseline <= TARGET_RATIO else 'MISSED'}"
        )

    # Adversarial input: many candidates that are refused (dates shaped like phone numbers).
    hostile = orjson.dumps({**document, "notes": "03-10-2026; " * 16_000})
    started = time.perf_counter()
    decision = engine.evaluate(Message("docs.parse", hostile, headers))
    elapsed = time.perf_counter() - started
    print(
        f"{len(hostile) // 1000} KB of date-like notes: {decision.verdict} in {elapsed:.3f} s  "
        f"target < {TARGET_ADVERSARIAL_S:.0f} s: "
        f"{'met' if elapsed < TARGET_ADVERSARIAL_S else 'MISSED'}"
    )
    disguised = dict(document)
    disguised["notes"] = NOTES.translate(_FULLWIDTH).replace("@", "\u200b@")
    disguised_message = Message("docs.parse", orjson.dumps(disguised), headers)
    check = engine.evaluate(disguised_message)
    assert check.allowed
    assert check.payload is not None
    assert b"7946" not in check.payload
    unicode_us = per_call_us(
        lambda: engine.evaluate(disguised_message), arguments.iterations // 4, arguments.repeats
    )
    print(f"decision, notes in fullwidth digits   {unicode_us:8.2f} us  (normalised view)")
    cold, warm = after_idle(lambda: engine.evaluate(canonical_message), COLD_SAMPLES, COLD_SLEEP)
    print(
        f"decision after {COLD_SLEEP * 1000:.0f} ms asleep        {cold:8.2f} us  "
        f"({cold / fast:.1f}x the loop's; the call right after it {warm:.2f} us): what one "
        "request at a low rate pays"
    )


def after_idle(function: Callable[[], object], samples: int, sleep: float) -> tuple[float, float]:
    """Median microseconds of a call made after ``sleep`` seconds asleep, and of the call made
    right after it: on a machine whose cores slow down or lose their caches while idle, the
    first is what every request pays when requests are far apart."""
    first, second = [], []
    for _ in range(samples):
        time.sleep(sleep)
        started = time.perf_counter()
        function()
        between = time.perf_counter()
        function()
        first.append((between - started) * 1e6)
        second.append((time.perf_counter() - between) * 1e6)
    return statistics.median(first), statistics.median(second)


_FULLWIDTH = str.maketrans("0123456789", "０１２３４５６７８９")


if __name__ == "__main__":
    main()
