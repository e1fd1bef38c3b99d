"""Links into the viewer: it opens on the subject with the most figures, and a link's subject, as_of and
known_at survive every redirect on the way, from / too."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import parse_qsl, urlsplit

import pytest
from litestar.testing import AsyncTestClient

from timeline.api.app import create_app
from timeline.importer import LoadedFixture, import_fixtures
from timeline.store import tokens
from timeline.store.database import Database

from .conftest import SEED

Client = AsyncTestClient  # type: ignore[type-arg]
SUBJECT = "dprk-troops-to-russia"


@pytest.fixture
async def client(database_url: str) -> AsyncIterator[Client]:
    seeding = Database(database_url)
    try:
        await import_fixtures(seeding, [LoadedFixture(str(SEED), SEED.read_bytes())], recorded_by="test")
        async with seeding.write() as conn:
            token = await tokens.create(conn, "editor", ("write",))
    finally:
        await seeding.dispose()
    async with AsyncTestClient(app=create_app(Database(database_url))) as c:
        # A subject with no figures, first by id: the viewer must not open on it.
        made = await c.post(
            "/subjects",
            json={"subject_id": "aaa-no-figures", "name": "A subject with no figures"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert made.status_code == 201, made.text
        yield c


async def _follow(client: Client, url: str) -> tuple[str, list[tuple[str, str]]]:
    """Follow redirects by hand; the final path and its query, in order."""
    for _ in range(5):
        got = await client.get(url, follow_redirects=False)
        if got.status_code not in (301, 302, 303, 307, 308):
            assert got.status_code == 200, got.text
            parts = urlsplit(url)
            return parts.path, parse_qsl(parts.query)
        url = got.headers["location"]
    raise AssertionError("too many redirects")


async def test_the_home_page_opens_on_the_subject_with_most_figures(client: Client) -> None:
    assert await _follow(client, "/") == ("/ui", [("subject", SUBJECT)])
    assert await _follow(client, "/ui") == ("/ui", [("subject", SUBJECT)])


async def test_a_links_moment_survives_every_redirect(client: Client) -> None:
    path, query = await _follow(client, "/?as_of=2024-10-20&known_at=12")
    assert path == "/ui"
    assert dict(query) == {"subject": SUBJECT, "as_of": "2024-10-20", "known_at": "12"}


async def test_a_links_subject_is_kept(client: Client) -> None:
    path, query = await _follow(client, "/?subject=aaa-no-figures&as_of=2024-10-20")
    assert (path, query) == ("/ui", [("subject", "aaa-no-figures"), ("as_of", "2024-10-20")])
