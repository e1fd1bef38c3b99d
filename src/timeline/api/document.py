"""The OpenAPI document, made to say what the server does where the generator cannot."""

from __future__ import annotations

from litestar import Litestar
from litestar.openapi.spec import OpenAPI, OpenAPIType, Reference, Schema

_FIGURE = {OpenAPIType.INTEGER, OpenAPIType.NUMBER}


def openapi(app: Litestar) -> OpenAPI:
    """The app's document, corrected (in place, once: the app serves the same object)."""
    document = app.openapi_schema
    if document.components is not None and document.components.schemas:
        for schema in document.components.schemas.values():
            _correct(schema)
    return document


def _correct(schema: Schema | Reference) -> None:
    if not isinstance(schema, Schema):
        return
    for child in (schema.properties or {}).values():
        _correct(child)
    for key in ("one_of", "any_of", "all_of"):
        for child in getattr(schema, key) or ():
            _correct(child)
    if isinstance(schema.items, Schema):
        _correct(schema.items)
    members = schema.one_of or []
    kinds = {m.type for m in members if isinstance(m, Schema) and isinstance(m.type, OpenAPIType)}
    # A figure is `int | float`: generated as oneOf [integer, number], which no integer satisfies (an integer
    # is a number too, so it matches two). JSON Schema's number already takes integers.
    if kinds >= _FIGURE and len(kinds) == len(members):
        schema.one_of = None
        schema.type = (
            [OpenAPIType.NUMBER, OpenAPIType.NULL] if OpenAPIType.NULL in kinds else OpenAPIType.NUMBER
        )
