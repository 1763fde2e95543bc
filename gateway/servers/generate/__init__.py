"""The server generator (#19): an MCP server from an API's documentation.

``document`` (read an OpenAPI 3.x / Swagger 2.0 document: parse, size cap, upgrade),
``swagger2`` (2.0 → 3.0), ``docs`` (the model path: a documentation page → an OpenAPI
document), ``kind`` (the ``servers.generate`` job kind a worker runs: the draft, test
calls), ``service`` (submit; the draft's reviewer: approve → a registered
``generated`` server, revert, reject with feedback → a new draft), ``api`` (``POST
/api/v1/servers/generate``). The tools themselves come from FastMCP's OpenAPI support
(``gateway/servers/runtimes/openapi.py``). See docs/generation.md.
"""
