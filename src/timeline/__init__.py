"""timeline: an event-sourced ledger of attributed claims."""

__version__ = "0.1.0"
