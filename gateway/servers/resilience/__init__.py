"""Circuit breakers and safe retries of backend calls (issue #21): the pipeline's
``breaker`` stage (stage.py), the breakers (breaker.py), retries (retry.py) and their
settings (settings.py). See docs/resilience.md."""
