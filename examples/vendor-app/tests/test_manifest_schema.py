"""The sample app's manifests are valid: against the published JSON Schema (what a vendor checks before
submitting) and against the app store's own model (what the store checks on submission)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from contracts.manifest import AppManifestV1

ROOT = Path(__file__).resolve().parents[3]
SCHEMA = json.loads((ROOT / "contracts" / "generated" / "schemas" / "app-manifest.v1.json").read_text("utf-8"))
MANIFESTS = sorted((ROOT / "examples" / "vendor-app").glob("manifest*.json"))
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def test_there_is_a_manifest_per_launch_type() -> None:
    kinds = {json.loads(path.read_text("utf-8"))["launch"]["type"] for path in MANIFESTS}
    assert kinds == {"oidc", "lti_1p3"}


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda path: path.name)
def test_manifest_validates_against_the_published_schema(path: Path) -> None:
    document = json.loads(path.read_text("utf-8"))
    errors = sorted(VALIDATOR.iter_errors(document), key=lambda error: list(error.path))
    assert not errors, [f"/{'/'.join(map(str, error.path))}: {error.message}" for error in errors]


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda path: path.name)
def test_manifest_is_accepted_by_the_app_store_model(path: Path) -> None:
    manifest = AppManifestV1.model_validate_json(path.read_text("utf-8"))
    assert "openid" in manifest.scope_ids
    assert all(len(request.purpose.zh_cn) >= 6 for request in manifest.scopes)
    assert manifest.pricing.unit_price_fen > 0


def test_the_schema_catches_what_a_vendor_gets_wrong() -> None:
    """The check is not vacuous: a manifest without purposes or with an unknown field fails with its pointer."""
    document = json.loads(MANIFESTS[0].read_text("utf-8"))
    del document["scopes"][0]["purpose"]
    document["colour"] = "blue"
    pointers = {"/" + "/".join(map(str, error.path)) for error in VALIDATOR.iter_errors(document)}
    assert "/scopes/0" in pointers
    assert "/" in pointers  # additionalProperties at the top
