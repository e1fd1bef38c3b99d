"""Append the one event type fixtures cannot express (DocumentAmended) to the database at argv[1].

Run once, by tests/data/README.md, to write log-2026-12-03.jsonl with the code of that day.
"""

from __future__ import annotations

import asyncio
import sys

from timeline.domain.events import DocumentAmended
from timeline.service import Recorder
from timeline.store.database import Database


async def main(url: str) -> None:
    db = Database(url)
    try:
        async with db.write() as conn:
            recorder = Recorder(conn, recorded_by="tests/data", label="amend_document.py")
            amended = DocumentAmended(
                document_id="invented-followup-2024-11", url="https://example.org/invented"
            )
            await recorder.record(amended, origin="amend_document.py")
            await recorder.finish()
    finally:
        await db.dispose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
