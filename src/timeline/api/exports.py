"""Exports for people who never write a client: TimelineJS3 JSON, schema.org JSON-LD, and CSV.

Each is a view of the same data as the JSON routes (``as_of`` and ``known_at`` apply), in another shape.
"""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Mapping
from typing import Annotated, Any

from litestar import Response, get
from litestar.params import FromPath, QueryParameter
from sqlalchemy.ext.asyncio import AsyncConnection

from timeline.api import headlines
from timeline.api.auth import requires
from timeline.api.common import Db, problems
from timeline.api.reads import AsOf, KnownAt, estimates_body, timeline_entries
from timeline.app import queries
from timeline.domain.events import DocumentRegistered, Occurred, Quantity, SourceRegistered, StatedDate
from timeline.domain.values import period_end, period_start
from timeline.projections import ClaimRecord, TimelineEntry
from timeline.store.queries import TimelineFilter

READ = [requires("read")]
EVERYTHING = 100_000
CSV = "text/csv"  # Litestar adds "; charset=utf-8" to every text/* type


def _date(stated: StatedDate, *, end: bool = False) -> dict[str, int]:
    # Only the parts the source's precision supports, as TimelineJS expects; a week is given by its days.
    if stated.precision == "week":
        day = period_end(stated) if end else period_start(stated)
        return {"year": day.year, "month": day.month, "day": day.day}
    parts = [int(p) for p in stated.date.split("-")]
    return dict(zip(("year", "month", "day"), parts, strict=False))


def occurred_words(occurred: Occurred) -> str:
    """When something happened, as the source put it or as its dates say."""
    if occurred.wording:
        return occurred.wording
    if occurred.end is None:
        return headlines.in_words(occurred.start)
    return f"{headlines.in_words(occurred.start)} to {headlines.in_words(occurred.end)}"


def _reported_in(entry: TimelineEntry, documents: Mapping[str, DocumentRegistered]) -> str:
    """The documents the event itself came from, linked when they have a URL, as slide HTML."""
    cited = []
    for document_id in entry.document_ids:
        doc = documents.get(document_id)
        title = html.escape(doc.title if doc is not None else document_id)
        url = doc.url if doc is not None else None
        cited.append(f'<a href="{html.escape(url)}">{title}</a>' if url else f"<cite>{title}</cite>")
    return f" <p>Reported in: {'; '.join(cited)}</p>" if cited else ""


def _slide(
    entry: TimelineEntry,
    names: queries.Names,
    documents: Mapping[str, DocumentRegistered],
    claims: Mapping[str, ClaimRecord],
) -> dict[str, Any]:
    source = names[entry.source_id]
    headline = headlines.headline(entry, names, names.kinds, claims)
    text = html.escape(entry.statement)
    if entry.corrected:
        text += " <em>(our record of this was corrected)</em>"
    slide: dict[str, Any] = {
        # Positions never change, so deep links survive new events.
        "unique_id": f"event-{entry.position}",
        "start_date": _date(entry.occurred_on),
        "text": {"headline": html.escape(headline), "text": text + _reported_in(entry, documents)},
        "group": html.escape(source),
    }
    if entry.occurred is not None:
        # Dated by when it happened: the range, and when it was said, are shown.
        if entry.occurred.end is not None:
            slide["end_date"] = _date(entry.occurred.end, end=True)
        elif entry.occurred.start.precision == "week":
            slide["end_date"] = _date(entry.occurred.start, end=True)
        slide["display_date"] = html.escape(occurred_words(entry.occurred))
        if entry.stated_on is not None:
            slide["text"]["text"] += f" <em>(said {html.escape(headlines.in_words(entry.stated_on))})</em>"
    if entry.url:
        slide["media"] = {"url": entry.url, "caption": text, "credit": html.escape(source)}
    return slide


@get(
    "/subjects/{subject_id:str}/timelinejs",
    operation_id="getTimelineJS",
    tags=["exports"],
    middleware=READ,
    responses=problems(400, 401, 403, 404),
)
async def timelinejs(
    db: Db, subject_id: FromPath[str], as_of: AsOf = None, known_at: KnownAt = None
) -> dict[str, Any]:
    """The subject's timeline in TimelineJS3's JSON format: a title slide and one slide per event, grouped by
    source, dated to the precision the source gave, text HTML-escaped. Load it with
    ``new TL.Timeline('id', '<this URL>')``; other origins need TIMELINE_CORS_ORIGINS."""
    found = await timeline_entries(db, subject_id, TimelineFilter(), EVERYTHING, as_of, known_at)
    documents = await queries.read(db, queries.documents)
    headline = html.escape(found.subject_name)
    return {
        "title": {"text": {"headline": headline, "text": "Claims recorded by timeline, by source."}},
        "events": [_slide(e, found.names, documents, found.claims) for e in found.entries],
    }


@get(
    "/subjects/{subject_id:str}/claims.jsonld",
    operation_id="getClaimsJsonLd",
    tags=["exports"],
    middleware=READ,
    media_type="application/ld+json",
    responses=problems(400, 401, 403, 404),
)
async def claims_jsonld(
    db: Db, subject_id: FromPath[str], as_of: AsOf = None, known_at: KnownAt = None
) -> dict[str, Any]:
    """Every claim made on the subject as a schema.org ``Claim``: the statement, its author (the source),
    when it was said, and the documents it appeared in."""
    found = await timeline_entries(
        db, subject_id, TimelineFilter(kinds=("made", "statement")), EVERYTHING, as_of, known_at
    )
    name, entries, records = found.subject_name, found.entries, found.claims
    documents, kinds = await queries.read(db, lambda conn: _context(conn, {e.source_id for e in entries}))

    def author(source_id: str) -> dict[str, str]:
        definition = kinds.get(source_id)
        person = definition is not None and definition.kind == "person"
        return {"@type": "Person" if person else "Organization", "name": found.names[source_id]}

    def appearance(document_id: str) -> dict[str, Any]:
        doc = documents.get(document_id)
        work: dict[str, Any] = {"@type": "NewsArticle", "identifier": document_id}
        if doc is not None:
            work.update(headline=doc.title, datePublished=doc.published_on.date)
            if doc.author:
                work["author"] = {"@type": "Person", "name": doc.author}
            if doc.url:
                work["url"] = doc.url
        return work

    items = []
    for e in entries:
        record = records.get(e.claim_id) if e.claim_id is not None else None
        document_ids = record.claim.document_ids if record else e.document_ids
        items.append(
            {
                "@type": "Claim",
                "identifier": e.claim_id or e.statement_id,
                "text": e.statement,
                "author": author(e.source_id),
                "datePublished": (e.stated_on or e.occurred_on).date,
                **({"temporalCoverage": _interval(e.occurred)} if e.occurred else {}),
                **({"mentions": _quantitative(e.quantity)} if e.quantity else {}),
                "about": {"@type": "Thing", "name": name},
                "appearance": [appearance(d) for d in document_ids],
                # Where the claim was first made: the ClaimMade event's own document.
                **({"firstAppearance": appearance(e.document_ids[0])} if e.document_ids else {}),
            }
        )
    return {"@context": "https://schema.org", "@type": "ItemList", "name": name, "itemListElement": items}


def _interval(occurred: Occurred) -> str:
    # schema.org takes an ISO 8601 interval: first day / last day of the period or range.
    last = period_end(occurred.end or occurred.start)
    return f"{period_start(occurred.start).isoformat()}/{last.isoformat()}"


def _quantitative(q: Quantity) -> dict[str, Any]:
    # A schema.org QuantitativeValue: an exact figure's value, a bound's minValue or maxValue.
    value: dict[str, Any] = {
        "@type": "QuantitativeValue",
        "unitText": q.unit,
        "description": headlines.figure(q),
    }
    if q.value is not None:
        value["value"] = q.value
    if q.lower is not None:
        value["minValue"] = q.lower
    if q.upper is not None:
        value["maxValue"] = q.upper
    return value


async def _context(
    conn: AsyncConnection, source_ids: set[str]
) -> tuple[dict[str, DocumentRegistered], dict[str, SourceRegistered]]:
    # Documents and sources as they stand now, in one snapshot.
    return await queries.documents(conn), await queries.sources_among(conn, source_ids)


def _csv(header: list[str], rows: list[list[Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")  # RFC 4180
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()


def _quantity_cells(q: Quantity | None) -> list[Any]:
    if q is None:
        return ["", "", "", "", "", ""]
    return [q.comparator, q.value if q.value is not None else "", q.lower if q.lower is not None else "",
            q.upper if q.upper is not None else "", q.unit, q.horizon.date if q.horizon else ""]  # fmt: skip


# ``horizon``: when a projected figure is expected, written to its precision ("2024-12").
QUANTITY_COLUMNS = ["comparator", "value", "lower", "upper", "unit", "horizon"]


def _occurred_cells(o: Occurred | None) -> list[str]:
    if o is None:
        return ["", "", ""]
    return [o.start.date, o.end.date if o.end else "", o.wording or ""]


OCCURRED_COLUMNS = ["occurred_start", "occurred_end", "occurred_wording"]


@get(
    "/subjects/{subject_id:str}/estimates.csv",
    operation_id="getEstimatesCsv",
    tags=["exports"],
    middleware=READ,
    media_type=CSV,
    responses=problems(400, 401, 403, 404),
)
async def estimates_csv(
    db: Db,
    subject_id: FromPath[str],
    metric: Annotated[str | None, QueryParameter(description="Only this metric")] = None,
    as_of: AsOf = None,
    known_at: KnownAt = None,
) -> Response[bytes]:
    """The estimates view as CSV (RFC 4180, UTF-8, a header row): one row per source, metric and kind of
    figure (``asserted``, then ``projected``), so a source's assertion and its projection are both there."""
    body = await estimates_body(db, subject_id, metric, as_of, known_at)
    rows = [
        [e.metric, e.source.id, e.source.name, kind, *_quantity_cells(f.quantity), f.modality,
         f.stated_on.date, f.stated_on.precision, f.status, ";".join(s.id for s in f.disputed_by),
         ";".join(s.id for s in f.confirmed_by), f.claim_id, f.statement, *_occurred_cells(f.occurred)]
        for e in body.estimates
        for kind, f in (("asserted", e.asserted), ("projected", e.projected))
        if f is not None
    ]  # fmt: skip
    header = ["metric", "source_id", "source_name", "kind", *QUANTITY_COLUMNS, "modality", "stated_on",
              "precision", "status", "disputed_by", "confirmed_by", "claim_id", "statement",
              *OCCURRED_COLUMNS]  # fmt: skip
    return Response(_csv(header, rows), media_type=CSV)


@get(
    "/subjects/{subject_id:str}/timeline.csv",
    operation_id="getTimelineCsv",
    tags=["exports"],
    middleware=READ,
    media_type=CSV,
    responses=problems(400, 401, 403, 404),
)
async def timeline_csv(
    db: Db, subject_id: FromPath[str], as_of: AsOf = None, known_at: KnownAt = None
) -> Response[bytes]:
    """The subject's whole timeline as CSV (RFC 4180, UTF-8, a header row), in the order it was stated."""
    found = await timeline_entries(db, subject_id, TimelineFilter(), EVERYTHING, as_of, known_at)
    entries, names = found.entries, found.names
    rows = [
        [e.position, e.occurred_on.date, e.occurred_on.precision, e.kind, e.claim_id, e.source_id,
         names[e.source_id], *_quantity_cells(e.quantity), "yes" if e.corrected else "no", e.url or "",
         e.statement, e.metric or "", e.addresses or "", e.statement_id or "", *_occurred_cells(e.occurred),
         e.stated_on.date if e.stated_on else e.occurred_on.date]
        for e in entries
    ]  # fmt: skip
    # Columns added later go last, so readers that count columns keep working. ``occurred_on`` dates the
    # entry (the start of ``occurred`` where the claim says when it happened); ``stated_on``: when said.
    header = ["position", "occurred_on", "precision", "kind", "claim_id", "source_id", "source_name",
              *QUANTITY_COLUMNS, "corrected", "url", "statement", "metric", "addresses",
              "statement_id", *OCCURRED_COLUMNS, "stated_on"]  # fmt: skip
    return Response(_csv(header, rows), media_type=CSV)


ROUTES = [timelinejs, claims_jsonld, estimates_csv, timeline_csv]
