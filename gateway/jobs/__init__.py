"""Long-running jobs: Celery workers run them, their events stream over SSE.

``models`` (jobs, job_events), ``repository``, ``kinds`` (the registry of job kinds),
``service`` (submit, get, list, cancel, events, reaper), ``hub`` (live events per
process), ``writer`` (every state change is an event), ``runner`` (a worker's side),
``celery_app``/``broker``/``worker`` (Celery, the embedded broker, worker processes),
``api`` (`/api/v1/jobs`). See docs/jobs.md.
"""
