"""The access line's own path (``logs.line``) writes what logging and structlog would, and steps aside when
anything but ``logs.configure``'s handler could see the record."""

from __future__ import annotations

import contextlib
import io
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from timeline import logs

from .helpers import logging_restored

_STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    with logging_restored():
        yield


def _both(fmt: logs.Format, fields: dict[str, Any], request_id: str | None) -> tuple[str, str]:
    """The line ``logger.info`` writes and the one ``logs.line`` writes, timestamps masked."""
    out = io.StringIO()
    logs.configure(fmt, "info", stream=out)
    access = logging.getLogger("timeline.access")
    with logs.request(request_id) if request_id is not None else contextlib.nullcontext():
        access.info("request", extra=dict(fields))
        slow = out.getvalue()
        logs.line(access, "request", dict(fields))
        fast = out.getvalue()[len(slow) :]
    return _STAMP.sub("T", slow), _STAMP.sub("T", fast)


# What goes into an access line's values: paths and queries as clients send them (spaces, quotes, '=', tabs,
# newlines, non-ASCII), statuses, durations, a missing query or client.
_odd = ["", "a b", "a=b", "it's", 'say "x"', "tab\there", "line\nbreak", "/claims/c1/revisions"]
_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=20) | st.sampled_from(_odd)
_fields = st.fixed_dictionaries(
    {
        "method": st.sampled_from(["GET", "POST", "HEAD"]),
        "path": _text,
        "query": st.none() | _text,
        "status": st.integers(100, 599),
        "duration_ms": st.floats(0, 1e6, allow_nan=False),
        "client": st.none() | st.just("127.0.0.1"),
    }
)


@pytest.mark.parametrize("fmt", logs.FORMATS)
@given(fields=_fields, request_id=st.none() | st.from_regex(r"[A-Za-z0-9._-]{1,12}", fullmatch=True))
def test_the_access_line_is_the_line_logging_would_write(
    fmt: logs.Format, fields: dict[str, Any], request_id: str | None
) -> None:
    slow, fast = _both(fmt, fields, request_id)
    assert fast == slow


def test_a_handler_of_anyone_else_gets_the_record_itself() -> None:
    out = io.StringIO()
    logs.configure("text", "info", stream=out)
    access = logging.getLogger("timeline.access")
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    keep = Keep()
    access.addHandler(keep)
    try:
        logs.line(access, "request", {"method": "GET", "status": 200})
    finally:
        access.removeHandler(keep)
    assert [(r.getMessage(), r.__dict__["status"]) for r in seen] == [("request", 200)]
    assert "method=GET status=200" in out.getvalue()  # and configure's handler still wrote it


def test_a_filter_or_a_higher_level_still_applies() -> None:
    out = io.StringIO()
    logs.configure("json", "warning", stream=out)
    access = logging.getLogger("timeline.access")
    logs.line(access, "request", {"status": 200})
    assert out.getvalue() == ""  # below the level
    logs.configure("json", "info", stream=out)
    access.addFilter(lambda record: record.__dict__.get("status") != 204)
    try:
        logs.line(access, "request", {"status": 204})
        logs.line(access, "request", {"status": 200})
    finally:
        access.filters.clear()
    assert out.getvalue().count('"status"') == 1
    assert '"status": 200' in out.getvalue()


def test_a_stream_that_fails_is_reported_as_logging_would_and_the_caller_goes_on(
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = io.StringIO()
    logs.configure("text", "info", stream=out)
    out.close()
    logs.line(logging.getLogger("timeline.access"), "request", {"status": 200})  # raises nothing
    assert "--- Logging error ---" in capsys.readouterr().err


def test_bound_context_goes_into_both_lines_alike() -> None:
    import structlog

    structlog.contextvars.bind_contextvars(tenant="t1", attempt=2)
    try:
        for fmt in logs.FORMATS:
            slow, fast = _both(fmt, {"status": 200}, "r1")
            assert "t1" in fast
            assert fast == slow
    finally:
        structlog.contextvars.clear_contextvars()
