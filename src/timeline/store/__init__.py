"""Storage: the append-only event log and the projection tables, on SQLite or PostgreSQL."""
