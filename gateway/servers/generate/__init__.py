"""The server generator (#19): an MCP server from an API's documentation.

``document`` (read an OpenAPI 3.x / Swagger 2.0 document: parse, size cap, upgrade),
``swagger2`` (2.0 → 3.0), ``docs`` (the model path: a documentation page → an OpenAPI
document), ``kind`` (the ``servers.generate`` job kind: draft, test calls), ``review``
(approve → a registered ``generated`` server; reject, with feedback → a new draft),
``api`` (``POST /api/v1/servers/generate``). See docs/generation.md.
"""
