"""Pillar 3: persistent, isolated sandboxes (the agent's computer)."""
