"""The per-process objects every router reaches through ``request.app.state.gw``."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Request

from gateway.audit.service import AuditLog
from gateway.auth.authenticator import Authenticator
from gateway.auth.oauth.service import OAuthService
from gateway.auth.service import IdentityService
from gateway.auth.sessions import SessionService
from gateway.auth.sso.flow import SsoService
from gateway.config import Settings
from gateway.db import Database
from gateway.observability.metrics import Metrics
from gateway.policy.service import PolicyService
from gateway.servers.connections.service import ConnectionService
from gateway.servers.service import ServerService
from sandboxes.service import SandboxService
from skills.service import SkillService


@dataclass
class GatewayState:
    settings: Settings
    db: Database
    identity: IdentityService
    authenticator: Authenticator
    head_revision: str | None
    servers: ServerService
    skills: SkillService
    sandboxes: SandboxService
    audit: AuditLog
    metrics: Metrics = field(default_factory=Metrics)
    sessions: SessionService | None = None
    oauth: OAuthService | None = None
    sso: SsoService | None = None
    connections: ConnectionService | None = None
    policies: PolicyService | None = None


def get_state(request: Request) -> GatewayState:
    state: GatewayState = request.app.state.gw
    return state
