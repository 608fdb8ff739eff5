"""The identity service's OpenAPI document, which the gateway merges for vendors, builds cleanly."""

from __future__ import annotations

import warnings

from fastapi import FastAPI


def test_the_openapi_document_builds_without_warnings_and_with_unique_operation_ids(app: FastAPI) -> None:
    app.openapi_schema = None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        document = app.openapi()
    operation_ids = [operation["operationId"] for item in document["paths"].values() for operation in item.values()]
    assert len(operation_ids) == len(set(operation_ids))
    assert "/oauth/userinfo" in document["paths"]
