"""What ``rbridge up`` shows: counts, link state, and one message as each side saw it."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson
from prometheus_client.parser import text_string_to_metric_families
from rich.columns import Columns
from rich.console import Group
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table

from bridge.up.traffic import Tally


@dataclass
class EdgeFigures:
    """Read from the edge bridge's /metrics."""

    decisions: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    transforms: Counter[str] = field(default_factory=Counter)
    links: dict[str, bool] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> EdgeFigures:
        figures = cls()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = sample.labels
                if sample.name == "rbridge_messages_total":
                    key = (labels["direction"], labels["decision"], labels["rule"])
                    figures.decisions[key] += int(sample.value)
                elif sample.name == "rbridge_transforms_total":
                    figures.transforms[labels["action"]] += int(sample.value)
                elif sample.name == "rbridge_link_up":
                    # Up if any edge bridge (with --ha, two) has it up.
                    destination = labels["destination"]
                    figures.links[destination] = (
                        figures.links.get(destination, False) or sample.value == 1
                    )
        return figures

    def outbound(self, decision: str) -> int:
        return sum(
            n for (d, v, _), n in self.decisions.items() if d == "outbound" and v == decision
        )

    def denied_by_rule(self) -> dict[str, int]:
        return {
            rule: n
            for (direction, decision, rule), n in sorted(self.decisions.items())
            if direction == "outbound" and decision == "deny"
        }


_DONE = {"drop": "dropped", "mask": "masked", "hash": "hashed", "tokenize": "tokenized"}


def _json(document: Any) -> Syntax:
    text = orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() if document else "…"
    return Syntax(text, "json", word_wrap=True, theme="ansi_dark")


def render(
    tally: Tally,
    figures: EdgeFigures,
    cloud_sample: dict[str, Any] | None,
    where: dict[str, str],
) -> Group:
    counts = Table(title="Residency Bridge — claims scenario", show_header=False, expand=False)
    counts.add_column(style="bold")
    counts.add_column(justify="right")
    counts.add_row("messages sent by agents", f"{tally.sent:,}")
    counts.add_row("allowed to the cloud (edge bridge)", f"{figures.outbound('allow'):,}")
    counts.add_row("denied at the edge", f"{figures.outbound('deny'):,}")
    for rule, number in figures.denied_by_rule().items():
        counts.add_row(f"   by rule {rule}", f"{number:,}")
    for action, number in sorted(figures.transforms.items()):
        counts.add_row(f"fields {_DONE.get(action, action)}", f"{number:,}")
    counts.add_row("claims answered (name re-identified)", f"{tally.named_correctly:,}")
    p50, p99 = tally.percentile(0.5), tally.percentile(0.99)
    if p50 is not None and p99 is not None:
        counts.add_row("claim round trip p50 / p99", f"{p50 * 1000:.0f} / {p99 * 1000:.0f} ms")
    for name, number in tally.errors.items():
        counts.add_row(f"[red]errors: {name}[/red]", f"{number:,}")
    for destination, up in sorted(figures.links.items()):
        state = "[green]up[/green]" if up else "[red]down[/red]"
        counts.add_row(f"link to {destination}", state)
    sides = Columns(
        [
            Panel(_json(tally.sample_edge), title="as the edge saw it (on-prem)", width=64),
            Panel(_json(cloud_sample), title="as the cloud saw it", width=64),
        ]
    )
    places = Table.grid(padding=(0, 1))
    for label, value in where.items():
        places.add_row(f"[dim]{label}[/dim]", value)
    return Group(counts, sides, places)
