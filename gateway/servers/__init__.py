"""Pillar 1: MCP servers registered once, kept connected, their tools catalogued and called."""
