"""Values signed by the server, so a visitor cannot mint them: visitor ids, form tokens.

A signed value travels as `value.signature`, the signature being HMAC-SHA256 under the server's
secret of a purpose and the value. Each use names its own purpose ("visitor", "signup"), so a
value signed for one use is refused by every other (a visitor cookie is no signup token).

The secret is `MODELSHOP_SECRET_KEY`, else a random one made on first use and kept in
`home/secret_key` (mode 0600): a restart, and every process on the same home, keeps accepting
what it signed. Replicas on different machines need the setting (the same on all of them).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from modelshop.errors import ValidationError
from modelshop.settings import Settings

SECRET_FILE = "secret_key"
MIN_SECRET_CHARS = 16


@dataclass(frozen=True)
class Signer:
    key: bytes

    def signature(self, purpose: str, value: str) -> str:
        """The bare signature of `value` for `purpose` (a form token is one)."""
        return hmac.new(self.key, f"{purpose}\x00{value}".encode(), hashlib.sha256).hexdigest()

    def sign(self, purpose: str, value: str) -> str:
        return f"{value}.{self.signature(purpose, value)}"

    def unsign(self, purpose: str, signed: str | None) -> str | None:
        """The value of `value.signature` when the server signed it for `purpose`, else None."""
        value, dot, mac = (signed or "").rpartition(".")
        return value if dot and self.check(purpose, value, mac) else None

    def check(self, purpose: str, value: str, signature: str | None) -> bool:
        """Whether `signature` is this server's for `value` and `purpose` (in constant time)."""
        return hmac.compare_digest(self.signature(purpose, value).encode(), (signature or "").encode())


def signer(settings: Settings) -> Signer:
    """The server's signer: `MODELSHOP_SECRET_KEY`, else the secret kept under `home`."""
    if settings.secret_key is not None:
        return Signer(settings.secret_key.get_secret_value().encode())
    return Signer(_home_secret(settings.home.resolve()))


@functools.lru_cache(maxsize=16)
def _home_secret(home: Path) -> bytes:
    path = home / SECRET_FILE
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True)
        tmp = home / f".{SECRET_FILE}.{secrets.token_hex(8)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(secrets.token_urlsafe(48) + "\n")
        try:
            os.link(tmp, path)  # atomic, and never replaces the secret a concurrent process made first
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    secret = path.read_text(encoding="ascii", errors="replace").strip()
    if len(secret) < MIN_SECRET_CHARS:
        raise ValidationError(f"{path} holds no usable secret; delete it (a new one is made, and visitor ids "
                              "signed with the old one stop counting) or set MODELSHOP_SECRET_KEY")
    return secret.encode()
