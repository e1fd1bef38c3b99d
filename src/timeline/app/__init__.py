"""The application layer: the commands and queries the HTTP API, the command line and the importer share.

Commands record proposed events in one unit of work with their metadata and idempotency; queries read the
views (or fold the log, at a moment in the past). Neither knows HTTP: errors are ``app.errors``.
"""
