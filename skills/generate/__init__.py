"""Skills from intent (#19, generator 2): a plain-text intent and linked servers become
a draft skill package — from a template (deterministic) or written by a model in a
tool-calling loop — checked strictly, its scripts run in a sandbox, then reviewed."""
