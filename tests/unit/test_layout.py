"""The import contracts cover the whole package: a new module cannot slip past them."""

from __future__ import annotations

import pkgutil
import tomllib
from typing import Any

import bridge
from tests.conftest import ROOT


def contracts() -> dict[str, dict[str, Any]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return {c["name"]: c for c in config["tool"]["importlinter"]["contracts"]}


def top_level() -> set[str]:
    return {f"bridge.{module.name}" for module in pkgutil.iter_modules(bridge.__path__)}


def test_every_module_but_the_link_is_kept_from_the_wire_code() -> None:
    wire = contracts()["only bridge.link uses the generated wire code"]
    sources = set(wire["source_modules"])
    assert top_level() - {"bridge.link"} <= sources
    assert "bridge.link" not in sources


def test_every_module_has_its_place_in_the_layers() -> None:
    layers = contracts()["bridge layers point one way"]["layers"]
    placed = {name.strip() for layer in layers for name in str(layer).split("|")}
    assert top_level() <= placed, top_level() - placed
