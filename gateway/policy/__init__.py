"""Policy and traffic control: rules on every call (engine.py), rate limits, quotas and
budgets (limits.py), the versioned document (document.py) and its use cases (service.py)."""
