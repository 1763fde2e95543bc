"""Encryption of stored secrets (server env vars, headers) with a key from config.

``MCPGW_SECRET_KEY`` may be any string of 32+ characters (a Fernet key is fine);
it is stretched with HKDF into the Fernet key. Without it, the embedded default
generates one into ``MCPGW_DATA_DIR/secret.key`` (mode 0600) on first start.
Replicas sharing a database must share the key: set it explicitly there.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gateway.datadir import FILE_MODE, private_dir

if TYPE_CHECKING:
    from gateway.config import Settings

log = logging.getLogger("gateway.crypto")

KEY_FILE = "secret.key"


class SecretBoxError(Exception):
    """A stored secret cannot be decrypted (wrong or rotated MCPGW_SECRET_KEY)."""


def _fernet_key(material: str) -> bytes:
    derived = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=b"mcpgw-secrets-v1", info=b"fernet"
    ).derive(material.encode())
    return base64.urlsafe_b64encode(derived)


def load_or_create_key(data_dir: Path) -> str:
    """Read the embedded default's key file, creating it (0600) if missing."""
    path = data_dir / KEY_FILE
    if path.is_file():
        return path.read_text().strip()
    private_dir(data_dir)
    material = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    os.fchmod(fd, FILE_MODE)  # whatever the umask
    with os.fdopen(fd, "w") as handle:
        handle.write(material)
    log.info("generated a secret key for stored credentials", extra={"path": str(path)})
    return material


class SecretBox:
    """Encrypts and decrypts JSON-serialisable mappings of secrets."""

    def __init__(self, material: str) -> None:
        if len(material) < 32:
            raise ValueError("the secret key must be at least 32 characters")
        self._fernet = Fernet(_fernet_key(material))

    def seal(self, data: dict[str, dict[str, str]]) -> str:
        return self._fernet.encrypt(json.dumps(data, sort_keys=True).encode()).decode()

    def open(self, token: str | None) -> dict[str, dict[str, str]]:
        if not token:
            return {}
        try:
            raw = self._fernet.decrypt(token.encode())
        except InvalidToken as exc:
            raise SecretBoxError(
                "stored secrets cannot be decrypted: MCPGW_SECRET_KEY differs from the key "
                "they were written with"
            ) from exc
        value = json.loads(raw)
        return value if isinstance(value, dict) else {}


def secret_box(settings: Settings) -> SecretBox:
    """What seals stored secrets: MCPGW_SECRET_KEY, else the data dir's key file (the
    gateway's and its workers' alike)."""
    key = settings.secret_key
    return SecretBox(
        key.get_secret_value() if key else load_or_create_key(settings.data_dir.resolve())
    )
