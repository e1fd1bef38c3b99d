"""The HTTP API: thin Litestar handlers that decode, call the store or service, and encode."""
