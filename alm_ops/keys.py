"""TorchServe's key_file.json: the one reader of its keys, and where a client's token comes from.

TorchServe 0.12 writes ``{"inference": {"key": ...}, "management": {"key": ...}, "API": {"key":
...}}`` into its working directory at start (``.serve/`` for scripts/serve.sh). The inference
and management keys expire and can be rotated (``POST /token`` with the API key), so a client
that took its key from the file reads the file again when the server refuses the key.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: The key file of the server that scripts/serve.sh starts.
SERVE_KEY_FILE = ROOT / ".serve" / "key_file.json"
KINDS = ("inference", "management", "API")


class KeyFileError(Exception):
    """A key file that cannot be read or holds no key of the wanted kind."""


def read_key(path: Path, kind: str = "inference") -> str:
    """The ``kind`` key (``inference``, ``management`` or ``API``) of a TorchServe key_file.json."""
    return read_keys(path, (kind,))[kind]


def read_keys(path: Path, kinds: tuple[str, ...] = KINDS) -> dict[str, str]:
    """The keys of ``kinds`` from a TorchServe key_file.json."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise KeyFileError(f"cannot read the token file {path}: {exc.strerror or exc}") from None
    except ValueError:
        raise KeyFileError(f"{path} is not a TorchServe key file (not JSON)") from None
    keys = {}
    for kind in kinds:
        entry = data.get(kind) if isinstance(data, dict) else None
        if not isinstance(entry, dict) or "key" not in entry:
            raise KeyFileError(f"{path} is not a TorchServe key file with a {kind!r} key")
        keys[kind] = str(entry["key"])
    return keys


class Token:
    """A bearer token and where it came from; a key file is read again when its key rotates.

    Shared by the threads of one client: `refresh` is safe to call from any of them.
    """

    def __init__(self, value: str | None, path: Path | None = None, kind: str = "inference") -> None:
        self.value, self.path, self.kind = value, path, kind
        self._lock = threading.Lock()

    @classmethod
    def resolve(
        cls, token_file: Path | None, env_var: str, default_file: Path = SERVE_KEY_FILE, kind: str = "inference"
    ) -> Token:
        """The first found: ``token_file``, the environment variable ``env_var``, ``default_file``
        (when it exists); else no token (a server with token authorisation off)."""
        if token_file is not None:
            return cls(read_key(token_file, kind), Path(token_file), kind)
        if os.environ.get(env_var):
            return cls(os.environ[env_var].strip())
        if default_file.is_file():
            return cls(read_key(default_file, kind), default_file, kind)
        return cls(None)

    def headers(self, value: str | None = None) -> dict[str, str]:
        """The ``Authorization`` header with ``value`` (default: the current key); none without a key."""
        value = value if value is not None else self.value
        return {"Authorization": f"Bearer {value}"} if value else {}

    def refresh(self, refused: str | None) -> str | None:
        """After the server refused ``refused``: the key file's current key if it differs, else None."""
        if self.path is None:
            return None
        with self._lock:
            if self.value == refused:
                try:
                    self.value = read_key(self.path, self.kind)
                except KeyFileError:
                    return None
            return self.value if self.value != refused else None
