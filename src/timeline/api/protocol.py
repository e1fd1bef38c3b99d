"""The HTTP protocol uvicorn serves with: requests it cannot parse (a NUL byte in a header, a request line
too long) are answered with problem+json like every other error, not uvicorn's text/plain."""

from __future__ import annotations

import msgspec
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from timeline.api.schemas import Problem


def unreadable(reason: str) -> bytes:
    """The 400 response, head and body, for a request the parser refused."""
    body = msgspec.json.encode(
        Problem(
            title="Bad Request",
            status=400,
            detail=f"the request could not be read as HTTP/1.1 ({reason}); check its headers and URL "
            "(no control characters, at most 8 KB per header line)",
        )
    )
    head = (
        b"HTTP/1.1 400 Bad Request\r\n"
        b"content-type: application/problem+json\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n"
        b"connection: close\r\n\r\n"
    )
    return head + body


class ProblemHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, answering unparseable requests with problem+json."""

    def send_400_response(self, msg: str) -> None:
        """Answer in problem+json, then close (the connection's framing can no longer be trusted)."""
        self.transport.write(unreadable(msg))
        self.transport.close()
