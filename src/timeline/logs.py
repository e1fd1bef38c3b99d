"""One logging setup for the whole process: structlog renders every line, ours and uvicorn's and the stdlib
loggers' alike, as JSON or as text, with the request id bound to whatever is logged while a request runs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Iterator, Mapping, MutableMapping
from contextvars import ContextVar
from typing import Any, Literal, NamedTuple

# structlog is imported where a line is configured or written, not with this module: the command line reads
# the formats and levels below to describe its options, and `timeline --help` need not load it.

Format = Literal["json", "text"]
FORMATS: tuple[Format, ...] = ("json", "text")
LEVELS = ("debug", "info", "warning", "error")


# The request being served, and the task serving it. A task started while serving a request (the group
# commit's, the live streams' reader) inherits this context for good, so a line is given the request's id
# only when it is written by the task that serves it.
_request: ContextVar[tuple[str, asyncio.Task[Any] | None] | None] = ContextVar(
    "timeline_request", default=None
)


def _task() -> asyncio.Task[Any] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:  # no event loop in this thread
        return None


@contextlib.contextmanager
def request(request_id: str) -> Iterator[None]:
    """Give the lines this task writes meanwhile the request's id."""
    token = _request.set((request_id, _task()))
    try:
        yield
    finally:
        _request.reset(token)


def _add_request_id(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> Mapping[str, Any]:
    bound = _request.get()
    if bound is not None and bound[1] is _task():
        event.setdefault("request_id", bound[0])
    return event


def _shared() -> list[Any]:
    """What every line carries, whichever logger wrote it."""
    import structlog

    return [
        structlog.contextvars.merge_contextvars,
        _add_request_id,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def configure(fmt: Format = "text", level: str = "info", stream: Any = None) -> None:
    """Send every logger's records to one handler on standard error (or ``stream``) in ``fmt``."""
    import structlog

    global _setup  # noqa: PLW0603 (the process's one logging setup, as the logging module's own)

    # Nothing here reads the caller's frame, thread or process: the logging HOWTO's optimisations.
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False

    shared = _shared()
    tail: list[Any]
    json_renderer = structlog.processors.JSONRenderer()
    if fmt == "json":
        # A traceback becomes a list of frames inside the line, so one record stays one line.
        tail = [structlog.processors.dict_tracebacks, json_renderer]
    else:
        tail = [
            structlog.dev.ConsoleRenderer(
                colors=False, exception_formatter=structlog.dev.plain_traceback, sort_keys=False
            )
        ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        # Records of stdlib loggers (uvicorn, SQLAlchemy, ours) get the same fields as structlog's own.
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder(), _drop_color_message],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tail],
    )
    handler: logging.Handler = logging.StreamHandler(stream) if stream is not None else _StandardError()
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
    # uvicorn's loggers carry handlers of their own, which would print lines in another format.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.asgi"):
        named = logging.getLogger(name)
        named.handlers = []
        named.propagate = True
        named.setLevel(level.upper())
    # The app writes one access line per request itself (with its id and duration): uvicorn's would repeat
    # it. uvicorn writes access lines only while this logger has a handler to reach.
    access = logging.getLogger("uvicorn.access")
    access.handlers = []
    access.propagate = False
    _setup = _Setup(handler, formatter, shared, json_renderer if fmt == "json" else _text_line)


class _Setup(NamedTuple):
    """What ``configure`` set up, for ``line`` to check that it still stands and to write as it would."""

    handler: logging.Handler
    formatter: logging.Formatter
    # The processors every line goes through, then what renders it.
    shared: list[Any]
    render: Any


_setup: _Setup | None = None


def line(logger: logging.Logger, event: str, fields: dict[str, Any]) -> None:
    """``logger.info(event, extra=fields)``, written straight to the handler when nothing but ``configure``'s
    setup would see the record: the same characters, at a third to a half of the cost.

    Hand-written because a measurement asked for it: the access line, one a request, went through two
    LogRecords, nine column formatters and a StringIO for each, 10.6% of a write server's CPU by py-spy
    (without it the server wrote 13% more); 10.3-10.8 µs a text line here, 35-37 through logging. Only the
    text renderer is written again; tests/test_logs.py checks that both ways write the same line."""
    setup = _setup
    if setup is None or not _only_ours(logger, setup):
        logger.info(event, extra=fields)
        return
    # As the formatter treats a stdlib record: the shared processors, then the record's extra fields.
    record: Any = {"event": event}
    for processor in setup.shared:
        record = processor(logger, "info", record)
    record.update(fields)
    text = setup.render(None, "info", record)
    handler = setup.handler
    with handler.lock or contextlib.nullcontext():
        try:
            handler.stream.write(text + handler.terminator)  # type: ignore[attr-defined]
            handler.flush()
            return
        except Exception:  # answered below
            pass
    # Not written (no stream, a closed or full one): through logging, which reports that its own way.
    logger.info(event, extra=fields)


def _only_ours(logger: logging.Logger, setup: _Setup) -> bool:
    """Whether an info record of ``logger`` would reach ``configure``'s handler alone, formatted by it."""
    if not logger.isEnabledFor(logging.INFO) or logger.filters:
        return False
    if logging.getLogRecordFactory() is not logging.LogRecord:  # a factory may add fields to every line
        return False
    handler = setup.handler
    if handler.filters or handler.level > logging.INFO or handler.formatter is not setup.formatter:
        return False
    node: logging.Logger | None = logger
    while node is not None:
        if node.parent is None:  # the root
            return node.handlers == [handler]
        if node.handlers or not node.propagate:
            return False
        node = node.parent
    return False


# ConsoleRenderer(colors=False)'s layout: the timestamp, the level padded to the longest level's name, the
# event padded to 30, the logger in brackets, then key=value (repr'd when the text would be ambiguous).
_LEVEL_WIDTH = len("exception")
_EVENT_WIDTH = 30
_AMBIGUOUS = frozenset(" \t=\r\n\"'")


def _text_line(_logger: Any, _method: str, record: dict[str, Any]) -> str:
    head = (
        f"{record.pop('timestamp')} [{record.pop('level'):<{_LEVEL_WIDTH}}] "
        f"{record.pop('event'):<{_EVENT_WIDTH}} [{record.pop('logger')}]"
    )
    pairs = " ".join(f"{key}={_value_text(value)}" for key, value in record.items())
    return f"{head} {pairs}".rstrip(" ")


def _value_text(value: Any) -> str:
    if isinstance(value, str) and not _AMBIGUOUS.intersection(value):
        return value
    return repr(value)


class _StandardError(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time of each record: a handler that kept the stream of
    the moment it was made wrote into closed files once that stream was swapped and closed (an in-process
    run of the CLI under a test's captured output, then any later log line)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def _drop_color_message(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> Mapping[str, Any]:
    # uvicorn passes a second, ANSI-coloured copy of some messages as an extra field.
    event.pop("color_message", None)
    return event


def get(name: str) -> Any:
    """A structlog logger named ``name`` (a stdlib logger underneath, so levels and handlers apply)."""
    import structlog

    return structlog.stdlib.get_logger(name)
