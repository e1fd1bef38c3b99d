"""The domain: events and claim rules. Pure Python, no I/O, no storage or HTTP imports."""
