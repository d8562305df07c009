"""The pages' token: an HMAC of a fixed label under the cluster secret, never the secret.

Whoever may read the secret may read the pages; the token shows nothing of the secret, and a
page can be shared (with its token) without sharing the right to run jobs. The browser gets
it once in the printed URL's `?token=` and keeps it in an HttpOnly, SameSite=Strict cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from http.cookies import CookieError, SimpleCookie

from hstream import protocol

LABEL = b"hstream web pages v1"


def token(secret: bytes) -> str:
    """The pages' token for a cluster secret (128 bits, hex)."""
    return hmac.new(secret, LABEL, hashlib.sha256).hexdigest()[:32]


def matches(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def cookie_name(port: int) -> str:
    """Cookies ignore ports: a name per port keeps two servers on one host apart."""
    return f"hstream_token_{port}"


def cookie_value(header: str | None, name: str) -> str | None:
    if not header:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header)
    except CookieError:
        return None
    morsel = jar.get(name)
    return morsel.value if morsel is not None else None


def set_cookie(name: str, value: str) -> str:
    return f"{name}={value}; Path=/; HttpOnly; SameSite=Strict"


def local_secret(home: str) -> bytes:
    """The secret behind `hstream ui`'s token: made once, kept 0600 in `home`."""
    path = os.path.join(home, "ui.secret")
    try:
        return protocol.read_secret(path)
    except (OSError, ValueError):
        os.makedirs(home, mode=0o700, exist_ok=True)
        secret = protocol.new_secret()
        protocol.write_secret(path, secret)
        return secret
