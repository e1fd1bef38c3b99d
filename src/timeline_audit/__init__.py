"""timeline-audit: an independent verifier of a timeline server's log (stdlib and cryptography only)."""
