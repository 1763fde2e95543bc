"""Pillar 2: Agent Skills (SKILL.md packages that teach agents how to use tools)."""
