"""The complete table set, for Alembic and tests: importing this registers every model."""

from gateway.audit import models as audit_models
from gateway.auth import models as auth_models
from gateway.auth.oauth import models as oauth_models
from gateway.db import Base
from gateway.jobs import models as job_models
from gateway.observability import models as settings_models
from gateway.policy import models as policy_models
from gateway.servers import models as server_models
from gateway.servers.connections import models as connection_models
from sandboxes import models as sandbox_models
from skills import models as skill_models

metadata = Base.metadata

__all__ = [
    "audit_models",
    "auth_models",
    "connection_models",
    "job_models",
    "metadata",
    "oauth_models",
    "policy_models",
    "sandbox_models",
    "server_models",
    "settings_models",
    "skill_models",
]
