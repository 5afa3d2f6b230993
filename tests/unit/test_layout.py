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


PRIVATE = {"Refused", "_OutOfTime"}


def test_every_exception_of_the_package_is_in_the_tree_and_drawn() -> None:
    import importlib
    import inspect

    from bridge import errors
    from bridge.errors import RbridgeError

    drawn = errors.__doc__ or ""
    found: dict[str, type] = {}
    names = [m.name for m in pkgutil.walk_packages(bridge.__path__, "bridge.")]
    for name in [*names, "cloud_agent.agent"]:
        if ".v1" in name:  # generated wire code
            continue
        module = importlib.import_module(name)
        for attribute, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == module.__name__
            ):
                found[attribute] = value
    assert len(found) >= 25, sorted(found)
    assert "CloudAgentUnavailable" in found
    for attribute, value in found.items():
        if attribute in PRIVATE:
            assert attribute in drawn, attribute
            continue
        assert issubclass(value, RbridgeError), f"{attribute} is outside the tree"
        assert f" {attribute} " in drawn, f"{attribute} is not drawn in bridge/errors.py"


def test_the_classifications_are_one_list() -> None:
    """The policy model's type and the headers' list name the same classes, in rank order."""
    import inspect
    from typing import get_args

    from bridge.contract import CLASSIFICATIONS
    from bridge.policy import engine, model

    assert get_args(model.Classification) == CLASSIFICATIONS
    assert "Verdict = " not in inspect.getsource(engine)  # defined once, in the model


def test_reasons_and_audit_kinds_are_written_in_one_place() -> None:
    """No module spells a decision reason itself (``kind:detail``, or a reason compared with a
    kind's text); the audit record kinds' values are Literal types, checked by mypy."""
    import re

    from bridge.policy.reasons import ReasonKind

    kinds = "|".join(re.escape(kind.value) for kind in ReasonKind)
    spelled = re.compile(rf"[\"']({kinds}):(?![\"'])|reason\b[^=\n]*==\s*[\"']({kinds})[\"']")
    allowed = {"bridge/policy/reasons.py"}
    found = []
    for path in sorted((ROOT / "bridge").rglob("*.py")):
        name = path.relative_to(ROOT).as_posix()
        if name in allowed or "/v1/" in name:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if spelled.search(line):
                found.append(f"{name}:{number}: {line.strip()}")
    assert not found, "\n".join(found)
