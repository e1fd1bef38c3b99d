"""The write API on both databases: every event type, refused transitions, If-Match, Idempotency-Key,
validation, and tokens with scopes. Every failed write is checked to leave the log untouched."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from timeline.api.app import create_app
from timeline.api.settings import Settings
from timeline.app.imports import LoadedFixture, import_fixtures
from timeline.store import tokens
from timeline.store.database import Database

from .conftest import SEED

NIS = "nis-1500-soldiers-sent-for-training"
SUBJECT = "dprk-troops-to-russia"
DOC = "000-16630df2654ec508"


class Editor:
    """A test client plus the secrets of tokens with each scope."""

    def __init__(self, client: AsyncTestClient, secrets: dict[str, str]) -> None:  # type: ignore[type-arg]
        self.client = client
        self.secrets = secrets

    def auth(self, who: str = "editor") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secrets[who]}"}

    async def post(self, url: str, body: dict[str, Any], who: str = "editor", **headers: str) -> Any:
        return await self.client.post(url, json=body, headers={**self.auth(who), **headers})

    async def head(self) -> int:
        return int((await self.client.get("/health")).json()["head_position"])


async def _make(database_url: str, settings: Settings) -> tuple[Database, dict[str, str]]:
    seeding = Database(database_url)
    try:
        await import_fixtures(seeding, [LoadedFixture(str(SEED), SEED.read_bytes())], recorded_by="test")
        secrets = {}
        async with seeding.write() as conn:
            secrets["editor"] = await tokens.create(conn, "editor", ("write",))
            secrets["other-editor"] = await tokens.create(conn, "other-editor", ("write",))
            secrets["reader"] = await tokens.create(conn, "reader", ("read",))
            secrets["admin"] = await tokens.create(conn, "admin", ("admin",))
            secrets["revoked"] = await tokens.create(conn, "revoked", ("write",))
            await tokens.revoke(conn, "revoked")
    finally:
        await seeding.dispose()
    return Database(database_url), secrets


@pytest.fixture
async def editor(database_url: str) -> AsyncIterator[Editor]:
    db, secrets = await _make(database_url, Settings())
    async with AsyncTestClient(app=create_app(db, Settings(future_slack_days=1))) as client:
        yield Editor(client, secrets)


def problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


def statement(text: str, on: str = "2024-10-25", **more: Any) -> dict[str, Any]:
    return {"statement": text, "stated_on": on, "document_ids": [DOC], **more}


async def test_editor_records_a_claims_whole_life(editor: Editor) -> None:
    """The issue's done-when: record, revise, deny, confirm, correct; see each in history and estimates."""
    created = await editor.post(
        "/claims",
        {
            "claim_id": "pentagon-3000",
            "subject_id": SUBJECT,
            "source_id": "cnn",
            **statement("About 3,000 North Korean soldiers are in Russia.", "2024-10-23"),
            "metric": "soldiers-sent",
            "quantity": {"comparator": "about", "value": 3000, "unit": "soldiers"},
        },
    )
    assert created.status_code == 201, created.text
    assert created.headers["etag"] == '"1"'
    body = created.json()
    assert body["stream_id"] == "claim-pentagon-3000"
    assert body["version"] == 1
    assert body["events"][0]["type"] == "ClaimMade"
    assert body["events"][0]["metadata"]["recorded_by"] == "editor"

    steps = [
        (
            "revisions",
            statement(
                "Now about 5,000.", quantity={"comparator": "about", "value": 5000, "unit": "soldiers"}
            ),
        ),
        ("denials", {"source_id": "kremlin", **statement("No proof.")}),
        ("confirmations", {"source_id": "south-korea-nis", **statement("We see the same.")}),
        (
            "evidence",
            {
                "kind": "image",
                "source_id": "cnn",
                "description": "Satellite image.",
                "stated_on": "2024-10-25",
                "document_ids": [DOC],
            },
        ),
        (
            "corrections",
            {
                "corrects_version": 2,
                "changes": {"quantity": {"comparator": "about", "value": 4000, "unit": "soldiers"}},
                "reason": "We typed 5,000; the source said 4,000.",
            },
        ),
    ]
    for version, (kind, payload) in enumerate(steps, start=2):
        response = await editor.post(
            f"/claims/pentagon-3000/{kind}", payload, **{"If-Match": f'"{version - 1}"'}
        )
        assert response.status_code == 201, (kind, response.text)
        assert response.headers["etag"] == f'"{version}"'

    claim = await editor.client.get("/claims/pentagon-3000")
    assert claim.headers["etag"] == '"6"'
    state = claim.json()
    assert state["status"] == "contested"
    assert state["quantity"] == {"comparator": "about", "unit": "soldiers", "value": 4000}
    assert [s["id"] for s in state["disputed_by"]] == ["kremlin"]
    assert [s["id"] for s in state["confirmed_by"]] == ["south-korea-nis"]
    assert state["evidence"][0]["produced_by"]["id"] == "cnn"
    assert state["corrections"][0]["corrects_version"] == 2

    history = (await editor.client.get("/claims/pentagon-3000/history")).json()["events"]
    assert [e["type"] for e in history] == [
        "ClaimMade",
        "ClaimRevised",
        "ClaimDenied",
        "ClaimConfirmed",
        "EvidenceAttached",
        "RecordCorrected",
    ]
    assert history[1]["data"]["quantity"]["value"] == 5000  # as first recorded
    assert {e["metadata"]["recorded_by"] for e in history} == {"editor"}

    estimates = (await editor.client.get(f"/subjects/{SUBJECT}/estimates")).json()["estimates"]
    cnn = next(e for e in estimates if e["source"]["id"] == "cnn")
    assert cnn["quantity"]["value"] == 4000
    assert cnn["status"] == "contested"

    retracted = await editor.post("/claims/pentagon-3000/retractions", statement("We withdraw it."))
    assert retracted.status_code == 201
    estimates = (await editor.client.get(f"/subjects/{SUBJECT}/estimates")).json()["estimates"]
    assert "cnn" not in {e["source"]["id"] for e in estimates}


@pytest.mark.parametrize(
    ("url", "payload", "status", "path", "message"),
    [
        (
            f"/claims/{NIS}/denials",
            {"source_id": "south-korea-nis", **statement("no")},
            409,
            "source",
            "record a retraction instead",
        ),
        (
            f"/claims/{NIS}/confirmations",
            {"source_id": "south-korea-nis", **statement("yes")},
            409,
            "source",
            "own source",
        ),
        (
            f"/claims/{NIS}/corrections",
            {"corrects_version": 9, "changes": {"statement": "x"}, "reason": "typo"},
            409,
            "corrects_version",
            "no event 9",
        ),
        (
            f"/claims/{NIS}/corrections",
            {"corrects_version": 2, "changes": {"metric": "tanks"}, "reason": "typo"},
            422,
            "changes.metric",
            "has no 'metric'",
        ),
        (
            f"/claims/{NIS}/denials",
            {"source_id": "nobody", **statement("no")},
            422,
            "source",
            "unknown source 'nobody'",
        ),
        (
            f"/claims/{NIS}/revisions",
            statement("x", quantity={"comparator": "about", "value": -5, "unit": "soldiers"}),
            422,
            "quantity.value",
            "negative",
        ),
        (
            f"/claims/{NIS}/revisions",
            statement("x", quantity={"comparator": "between", "lower": 9, "upper": 3, "unit": "soldiers"}),
            422,
            "quantity.lower",
            "above upper",
        ),
        (f"/claims/{NIS}/revisions", statement("x", "2999-01-01"), 422, "stated_on", "in the future"),
        (f"/claims/{NIS}/revisions", statement("x", "2024-02-30"), 422, "stated_on", "not a calendar date"),
        (f"/claims/{NIS}/revisions", statement("   "), 422, "statement", "empty statement"),
    ],
)
async def test_refused_writes_say_where_and_what_and_write_nothing(
    editor: Editor, url: str, payload: dict[str, Any], status: int, path: str, message: str
) -> None:
    before = await editor.head()
    body = problem(await editor.post(url, payload), status)
    assert body["errors"][0]["path"] == path
    assert message in body["errors"][0]["message"]
    assert "nothing was recorded" in body["detail"]
    assert await editor.head() == before


async def test_revising_a_retracted_claim_is_refused(editor: Editor) -> None:
    assert (await editor.post(f"/claims/{NIS}/retractions", statement("withdrawn"))).status_code == 201
    before = await editor.head()
    body = problem(await editor.post(f"/claims/{NIS}/revisions", statement("more")), 409)
    assert "retracted" in body["detail"]
    assert await editor.head() == before


async def test_unknown_claim_is_404(editor: Editor) -> None:
    body = problem(await editor.post("/claims/no-such-claim/revisions", statement("x")), 404)
    assert "unknown claim 'no-such-claim'" in body["detail"]


@pytest.mark.parametrize(
    ("payload", "path", "message"),
    [
        (
            {"quantity": {"comparator": "about", "value": "many", "unit": "x"}},
            "quantity.value",
            "Expected `int | float | null`, got `str`",
        ),
        ({"colour": "red"}, None, "unknown field `colour`"),
        ({"stated_on": "yesterday"}, "stated_on", "expected a date as YYYY-MM-DD"),
        ({"statement": ""}, "statement", "Expected `str` of length >= 1"),
    ],
)
async def test_malformed_bodies_are_400_naming_the_field(
    editor: Editor, payload: dict[str, Any], path: str | None, message: str
) -> None:
    before = await editor.head()
    body = problem(await editor.post(f"/claims/{NIS}/revisions", {**statement("x"), **payload}), 400)
    assert message in body["detail"]
    if path is not None:
        assert path in body["detail"]
    assert await editor.head() == before


async def test_oversized_body_is_413(database_url: str) -> None:
    db, secrets = await _make(database_url, Settings())
    async with AsyncTestClient(app=create_app(db, Settings(max_body_bytes=2_000))) as client:
        response = await client.post(
            f"/claims/{NIS}/revisions",
            json=statement("x" * 5_000),
            headers={"Authorization": f"Bearer {secrets['editor']}"},
        )
        assert "over the limit of 2,000 bytes" in problem(response, 413)["detail"]


async def test_if_match_stale_is_412_and_writes_nothing(editor: Editor) -> None:
    tag = (await editor.client.get(f"/claims/{NIS}")).headers["etag"]
    assert tag == '"2"'
    stale = '"1"'
    before = await editor.head()
    body = problem(await editor.post(f"/claims/{NIS}/revisions", statement("x"), **{"If-Match": stale}), 412)
    assert "at version 2" in body["detail"]
    assert await editor.head() == before
    problem(await editor.post(f"/claims/{NIS}/revisions", statement("x"), **{"If-Match": "soon"}), 400)
    ok = await editor.post(f"/claims/{NIS}/revisions", statement("x"), **{"If-Match": tag})
    assert ok.status_code == 201
    assert ok.headers["etag"] == '"3"'
    cached = await editor.client.get(f"/claims/{NIS}", headers={"If-None-Match": '"3"'})
    assert cached.status_code == 304


async def test_concurrent_writers_one_wins_per_version(editor: Editor) -> None:
    writers = 6
    for round_ in range(3):
        version = int((await editor.client.get(f"/claims/{NIS}")).headers["etag"].strip('"'))
        responses = await asyncio.gather(
            *(
                editor.post(
                    f"/claims/{NIS}/revisions",
                    statement(f"round {round_} writer {w}", revision_id=f"r{round_}-w{w}"),
                    **{"If-Match": f'"{version}"'},
                )
                for w in range(writers)
            )
        )
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [201] + [412] * (writers - 1), statuses
    history = (await editor.client.get(f"/claims/{NIS}/history")).json()["events"]
    assert [e["stream_version"] for e in history] == list(range(1, 6))  # 2 seeded + 3 winners
    assert [e["type"] for e in history[2:]] == ["ClaimRevised"] * 3


async def test_idempotency_key_replays_and_refuses_a_different_body(editor: Editor) -> None:
    payload = {"source_id": "france", **statement("France doubts it.")}
    first = await editor.post(f"/claims/{NIS}/denials", payload, **{"Idempotency-Key": "k1"})
    assert first.status_code == 201
    head = await editor.head()
    again = await editor.post(f"/claims/{NIS}/denials", payload, **{"Idempotency-Key": "k1"})
    assert again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert await editor.head() == head
    body = problem(
        await editor.post(
            f"/claims/{NIS}/denials", {**payload, "statement": "other"}, **{"Idempotency-Key": "k1"}
        ),
        422,
    )
    assert "already used for a different request" in body["detail"]
    # Keys belong to a token: another editor's "k1" is a request of its own.
    other = await editor.post(
        f"/claims/{NIS}/denials",
        {**payload, "denial_id": "d2"},
        who="other-editor",
        **{"Idempotency-Key": "k1"},
    )
    assert other.status_code == 201
    assert other.json()["events"][0]["metadata"]["recorded_by"] == "other-editor"


@pytest.mark.parametrize(
    ("headers", "status", "detail"),
    [
        ({}, 401, "needs a bearer token"),
        ({"Authorization": "Basic abc"}, 401, "expected 'Authorization: Bearer <token>'"),
        ({"Authorization": "Bearer tl_wrong"}, 401, "unknown token"),
        ("revoked", 401, "was revoked"),
        ("reader", 403, "this needs 'write'"),
    ],
)
async def test_writes_need_a_live_token_with_the_scope(
    editor: Editor, headers: dict[str, str] | str, status: int, detail: str
) -> None:
    if isinstance(headers, str):
        headers = editor.auth(headers)
    before = await editor.head()
    response = await editor.client.post(f"/claims/{NIS}/revisions", json=statement("x"), headers=headers)
    body = problem(response, status)
    assert detail in body["detail"]
    if status == 401:
        assert response.headers["www-authenticate"].startswith("Bearer")
    assert await editor.head() == before


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (f"/claims/{NIS}/revisions", b'{"statement": 5'),
        ("/claims", b"[]"),
        ("/imports", b"events: [unclosed"),
    ],
)
async def test_the_token_is_checked_before_the_body_is_read(editor: Editor, path: str, body: bytes) -> None:
    # A caller without a token learns that it needs one, not what is wrong with what it sent.
    refused = await editor.client.post(path, content=body, headers={"Content-Type": "application/json"})
    assert "bearer token" in problem(refused, 401)["detail"]
    reader = await editor.client.post(path, content=body, headers=editor.auth("reader"))
    assert problem(reader, 403)["status"] == 403


async def test_imports_and_rebuild_need_admin(editor: Editor) -> None:
    fixture = SEED.read_bytes()
    problem(await editor.client.post("/imports", content=fixture, headers=editor.auth("editor")), 403)
    ok = await editor.client.post("/imports", content=fixture, headers=editor.auth("admin"))
    assert ok.status_code == 200
    assert ok.json()["appended"] == 0
    problem(await editor.client.post("/admin/rebuild", headers=editor.auth("editor")), 403)
    rebuilt = await editor.client.post("/admin/rebuild", headers=editor.auth("admin"))
    assert rebuilt.json()["replayed"] == await editor.head()


async def test_reads_can_require_a_token(database_url: str) -> None:
    db, secrets = await _make(database_url, Settings())
    async with AsyncTestClient(app=create_app(db, Settings(public_reads=False))) as client:
        problem(await client.get(f"/claims/{NIS}"), 401)
        ok = await client.get(f"/claims/{NIS}", headers={"Authorization": f"Bearer {secrets['reader']}"})
        assert ok.status_code == 200
        assert (await client.get("/health")).status_code == 200


async def test_subjects_sources_documents_as_events(editor: Editor) -> None:
    created = await editor.post(
        "/sources", {"source_id": "pentagon", "name": "Pentagon", "kind": "government", "country": "US"}
    )
    assert created.status_code == 201
    same = await editor.post(
        "/sources", {"source_id": "pentagon", "name": "Pentagon", "kind": "government", "country": "US"}
    )
    assert same.status_code == 200
    assert same.json()["events"] == []
    clash = problem(
        await editor.post("/sources", {"source_id": "pentagon", "name": "DoD", "kind": "government"}), 409
    )
    assert 'name: recorded "Pentagon", now "DoD"' in clash["detail"]
    amended = await editor.client.patch(
        "/sources/pentagon",
        json={"name": "US Department of Defense", "aliases": ["Pentagon"]},
        headers=editor.auth(),
    )
    assert amended.status_code == 201
    assert amended.json()["version"] == 2
    problem(await editor.client.patch("/sources/nobody", json={"name": "x"}, headers=editor.auth()), 404)
    problem(await editor.client.patch("/sources/pentagon", json={}, headers=editor.auth()), 422)
    source = (await editor.client.get("/sources/pentagon")).json()
    assert source["source"]["name"] == "US Department of Defense"
    assert source["source"]["aliases"] == ["Pentagon"]
    assert source["claims"] == []

    assert (
        await editor.post("/subjects", {"subject_id": "sanctions", "name": "Sanctions"})
    ).status_code == 201
    renamed = await editor.client.patch(
        "/subjects/sanctions", json={"description": "Sanctions on arms"}, headers=editor.auth()
    )
    assert renamed.status_code == 201
    doc = {"document_id": "later", "title": "Later", "published_on": "2024-11"}
    assert (await editor.post("/documents", doc)).status_code == 201
    future = problem(
        await editor.post("/documents", {**doc, "document_id": "x", "published_on": "2999"}), 422
    )
    assert future["errors"][0]["path"] == "published_on"

    subjects = (await editor.client.get("/subjects", params={"limit": 2})).json()
    assert [s["subject_id"] for s in subjects["subjects"]] == [
        "dprk-russia-military-cooperation",
        "dprk-troops-to-russia",
    ]
    rest = (await editor.client.get(subjects["next"])).json()
    assert [(s["subject_id"], s["description"]) for s in rest["subjects"]] == [
        ("sanctions", "Sanctions on arms")
    ]
    assert rest["next"] is None
    agencies = (await editor.client.get("/sources", params={"kind": "agency"})).json()["sources"]
    assert [s["source_id"] for s in agencies] == ["south-korea-nis", "ukraine-spravdi"]
    documents = (await editor.client.get("/documents")).json()["documents"]
    assert [d["document_id"] for d in documents] == [DOC, "later"]
    assert documents[1]["published_on"] == {"date": "2024-11", "precision": "month"}


async def test_source_page_lists_its_claims_and_their_fates(editor: Editor) -> None:
    body = (await editor.client.get("/sources/volodymyr-zelenskyy")).json()
    assert body["source"]["country"] == "UA"
    fates = {c["claim_id"]: c["status"] for c in body["claims"]}
    assert fates == {
        "zelenskyy-preparing-to-send-10000": "disputed",
        "zelenskyy-warns-of-major-war": "standing",
    }
    problem(await editor.client.get("/sources/nobody"), 404)


async def test_timeline_filters_by_source_kind_and_dates(editor: Editor) -> None:
    await editor.post(f"/claims/{NIS}/revisions", statement("about 3,000 now", "2024-11-05"))
    url = f"/subjects/{SUBJECT}/timeline"
    by_kremlin = (await editor.client.get(url, params={"source": "kremlin"})).json()["entries"]
    assert {e["kind"] for e in by_kremlin} == {"denied"}
    assert len(by_kremlin) == 5
    evidence = (await editor.client.get(url, params={"kind": "evidence,revised"})).json()["entries"]
    assert [e["kind"] for e in evidence] == ["evidence", "evidence", "revised"]
    november = (await editor.client.get(url, params={"since": "2024-11-01", "until": "2024-11-30"})).json()
    assert [e["statement"] for e in november["entries"]] == ["about 3,000 now"]
    paged = (await editor.client.get(url, params={"source": "kremlin", "limit": 2})).json()
    assert "source=kremlin" in paged["next"]
    problem(await editor.client.get(url, params={"kind": "rumour"}), 400)
    problem(await editor.client.get(url, params={"since": "2024-12-01", "until": "2024-11-01"}), 400)


async def test_future_date_slack_is_configurable(editor: Editor) -> None:
    tomorrow = (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)).isoformat()
    ok = await editor.post(f"/claims/{NIS}/revisions", statement("tomorrow in UTC+14", tomorrow))
    assert ok.status_code == 201


async def test_a_token_revoked_elsewhere_is_refused_from_the_next_request_on(
    editor: Editor, database_url: str
) -> None:
    # Token checks are shared between concurrent requests, never cached: a revocation by the CLI or another
    # process counts at once.
    elsewhere = Database(database_url)
    first = await editor.post(
        "/sources", {"source_id": "early", "name": "E", "kind": "agency"}, "other-editor"
    )
    assert first.status_code == 201
    try:
        async with elsewhere.write() as conn:
            assert await tokens.revoke(conn, "other-editor")
    finally:
        await elsewhere.dispose()
    refused = await editor.post(
        "/sources", {"source_id": "late", "name": "L", "kind": "agency"}, "other-editor"
    )
    assert "was revoked" in problem(refused, 401)["detail"]
