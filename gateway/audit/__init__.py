"""The platform's audit trail: every call and every change, masked, hash-chained,
written off the request path and never dropped (see docs/audit.md)."""
