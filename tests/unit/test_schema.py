"""The JSON Schema: generated from the models, committed fresh, and valid for the examples."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from bridge.cli.policy_cmd import schema_text
from tests.conftest import POLICIES, ROOT

SCHEMA_FILE = POLICIES / "schema" / "residency-policy.schema.json"
EXAMPLES = sorted(POLICIES.glob("*.yaml"))


def test_committed_schema_is_fresh() -> None:
    """policies/schema/ matches the models; regenerate with: rbridge policy schema --out FILE."""
    assert SCHEMA_FILE.read_text() == schema_text(), (
        "stale schema: run `rbridge policy schema --out policies/schema/residency-policy.schema.json`"
    )


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_validate_against_the_schema_and_point_editors_at_it(path: Path) -> None:
    """Editors get completion and checking from the modeline; the examples pass the schema."""
    text = path.read_text()
    assert text.startswith("# yaml-language-server: $schema=schema/residency-policy.schema.json\n")
    jsonschema.validate(yaml.safe_load(text), json.loads(SCHEMA_FILE.read_text()))


def test_schema_rejects_unknown_keys() -> None:
    """The schema is as strict as the loader about keys it does not know."""
    schema = json.loads(SCHEMA_FILE.read_text())
    document = yaml.safe_load((POLICIES / "hr.yaml").read_text())
    document["spec"]["rules"][0]["destinatons"] = ["x"]
    with pytest.raises(jsonschema.ValidationError, match="destinatons"):
        jsonschema.validate(document, schema)


@pytest.mark.parametrize(
    "config", [ROOT / "deploy" / "package" / "edge.yaml", ROOT / "deploy" / "config" / "edge.yaml"]
)
def test_the_shipped_edge_settings_agree_with_the_shipped_policy(config: Path) -> None:
    """Every destination the example policy sends to has a gateway in the shipped settings (the
    check start-up and --check-config run), in the jurisdiction the policy gives it."""
    from bridge.edge.app import check_destinations
    from bridge.edge.config import EdgeSettings
    from bridge.policy import load_policy_file

    data = yaml.safe_load(config.read_text())
    data["policy"]["path"] = str(POLICIES / "claims.yaml")
    data["site"] = "plant-a"  # the package ships a placeholder the operator must replace
    settings = EdgeSettings(**data)
    check_destinations(settings, load_policy_file(POLICIES / "claims.yaml").policy)
