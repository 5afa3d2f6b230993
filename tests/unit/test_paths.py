"""The JSONPath subset: parsing, refusal of the rest, and locating fields."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.policy.paths import FieldPath, render


def values(path: str, document: Any) -> list[Any]:
    return [container[slot] for container, slot in FieldPath.parse(path).locate(document)]


DOC = {
    "claimant": {"name": "Jane", "address": {"city": "Leeds"}},
    "items": [{"name": "bumper", "cost": 300}, {"name": "light", "cost": 120}, {"cost": 5}],
    "odd key": 1,
    "nested": {"deeper": {"name": "inner"}},
}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("$.claimant.name", ["Jane"]),
        ("$.claimant.address.city", ["Leeds"]),
        ("$.claimant.missing", []),
        ("$.claimant.name.x", []),
        ("$.items[*].name", ["bumper", "light"]),
        ("$.items[1].cost", [120]),
        ("$.items[9].cost", []),
        ("$['odd key']", [1]),
        ("$.claimant.*", ["Jane", {"city": "Leeds"}]),
        ("$..name", ["Jane", "bumper", "light", "inner"]),
        ("$..city", ["Leeds"]),
        (
            "$.items[*]",
            [{"name": "bumper", "cost": 300}, {"name": "light", "cost": 120}, {"cost": 5}],
        ),
    ],
)
def test_locate_finds_every_named_field_in_document_order(path: str, expected: list[Any]) -> None:
    """Paths name exactly the fields a reader would expect, outermost first."""
    assert values(path, DOC) == expected


@pytest.mark.parametrize(
    "path",
    [
        "claimant.name",
        "$",
        "$.",
        "$..",
        "$.a[",
        "$.a[-1]",
        "$.a[?(@.x)]",
        "$.a[1:2]",
        "$.1abc",
        "$..*",
        "$." + "a" * 600,
    ],
)
def test_unsupported_or_malformed_paths_are_refused(path: str) -> None:
    """Anything outside the subset is an error at load time, not a silent no-match."""
    with pytest.raises(ValueError):  # noqa: PT011 - messages differ per case; each is checked below
        FieldPath.parse(path)


def test_refusal_says_where_and_what_is_supported() -> None:
    """The message points at the character and lists the supported forms."""
    with pytest.raises(ValueError, match=r"unexpected '\?' at character 4; supported"):
        FieldPath.parse("$.a?")


def test_paths_on_non_container_values_find_nothing() -> None:
    """A path through a scalar, or into the wrong container type, matches nothing."""
    assert values("$.a.b", {"a": 5}) == []
    assert values("$.a[0]", {"a": {"0": 1}}) == []
    assert values("$.a[*]", {"a": "text"}) == []


def test_render_quotes_names_that_need_it() -> None:
    """Concrete locations are shown as paths that parse back to the same place."""
    assert render(("a", 0, "b c", "it's")) == "$.a[0]['b c']['it\\'s']"
    assert values(render(("odd key",)), DOC) == [1]
