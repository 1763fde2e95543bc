"""Pillar 1's surface on `/mcp`: the aggregated servers' tools, resources and prompts.

What the MCP front (gateway/mcp/) serves of the registered servers: the caller's view
of their catalogs (view.py), the fast path for `tools/call` and `tools/list`
(fastpath.py, fastcall.py, fastlist.py, fastrelay.py), 2026-07-28 agents' answers to
a backend's questions (input_bridge.py, sdk_input.py) and resource URI namespacing
(uris.py).
"""
