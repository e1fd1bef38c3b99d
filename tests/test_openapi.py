"""The committed OpenAPI document is the one the app serves."""

from __future__ import annotations

import json

from litestar.testing import AsyncTestClient

from timeline.api.app import create_app
from timeline.cli.admin import openapi_document
from timeline.store.database import Database

from .conftest import ROOT


def test_committed_openapi_matches_the_app() -> None:
    committed = (ROOT / "openapi" / "openapi.json").read_text()
    assert json.loads(committed) == json.loads(openapi_document()), (
        "openapi/openapi.json is stale: run `make openapi` and commit it"
    )


async def test_the_app_serves_the_same_document(tmp_path: object) -> None:
    async with AsyncTestClient(app=create_app(Database("sqlite+aiosqlite:///:memory:"))) as client:
        served = (await client.get("/schema/openapi.json")).json()
    committed = json.loads((ROOT / "openapi" / "openapi.json").read_text())
    assert served == committed
    operations = {
        op["operationId"] for path in served["paths"].values() for op in path.values() if "operationId" in op
    }
    assert operations == {
        "getHealth",
        "getEstimates",
        "getTimeline",
        "getClaim",
        "getClaimHistory",
        "getEvents",
        "listSubjects",
        "listSources",
        "getSource",
        "listDocuments",
        "createClaim",
        "reviseClaim",
        "denyClaim",
        "withdrawDenial",
        "confirmClaim",
        "retractClaim",
        "attachEvidence",
        "correctClaimRecord",
        "createSubject",
        "makeStatement",
        "amendSubject",
        "createSource",
        "amendSource",
        "createDocument",
        "amendDocument",
        "createImport",
        "rebuildViews",
        "getAuditHead",
        "verifyLog",
        "exportLog",
        "getCheckpoint",
        "getInclusionProof",
        "getConsistencyProof",
        "addCosignature",
        "streamEvents",
        "ping",
        "getTimelineJS",
        "getClaimsJsonLd",
        "getEstimatesCsv",
        "getTimelineCsv",
        "viewer",
        "draftFixture",
    }


def test_the_document_says_what_the_server_sends() -> None:
    document = json.loads((ROOT / "openapi" / "openapi.json").read_text())
    quantity = document["components"]["schemas"]["Quantity"]["properties"]
    for name in ("value", "lower", "upper"):
        # One type taking integers and fractions alike (a oneOf [integer, number] refuses every integer).
        assert quantity[name] == {"type": ["number", "null"]}, quantity[name]
    assert "oneOf" not in json.dumps({k: v for k, v in quantity.items() if k != "horizon"})
    # A projection's horizon is a date with its precision, or nothing.
    assert quantity["horizon"] == {"oneOf": [{"$ref": "#/components/schemas/StatedDate"}, {"type": "null"}]}
    assert list(document["paths"]["/ui"]["get"]["responses"]["200"]["content"]) == ["text/html"]
    stream = document["paths"]["/events/stream"]["get"]["responses"]["200"]["content"]
    assert list(stream) == ["text/event-stream"]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for code, response in operation["responses"].items():
                if code[0] in "45":
                    assert list(response["content"]) == ["application/problem+json"], (path, method, code)
