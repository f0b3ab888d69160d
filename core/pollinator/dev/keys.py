"""The local colony's identities, made once and kept in the data dir.

Keys live in ``keys.json`` (mode 0600) so a restart keeps the same colony,
the same user and therefore the same processes and files.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from pollinator.colonies import crypto


@dataclass(frozen=True)
class ColonyKeys:
    server: str
    colony: str
    user: str

    def __repr__(self) -> str:  # never show keys
        return f"ColonyKeys(server_id={crypto.id_from_private_key(self.server)[:12]}...)"


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read, created that way (no window where it is world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(path, 0o600)


def load_or_create_keys(data_dir: Path) -> ColonyKeys:
    path = data_dir / "keys.json"
    if path.exists():
        data = json.loads(path.read_text())
        return ColonyKeys(server=data["server"], colony=data["colony"], user=data["user"])
    keys = ColonyKeys(crypto.generate_private_key(), crypto.generate_private_key(), crypto.generate_private_key())
    write_private(path, json.dumps(asdict(keys)))
    return keys
