"""Logging, request ids, secret masking (metrics and tracing join here later)."""
