"""Identity tokens of the widget: the company's backend signs who the customer is (JWT, HS256, with the site key's
secret) and the widget passes the token on. Only a verified identity may see earlier conversations.

Claims: ``sub`` (the company's user id, required), ``exp`` (required; seconds since the epoch), ``email`` and
``name`` (optional). RFC 7519; PyJWT checks the signature and the expiry.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import jwt

ALGORITHM = "HS256"
LEEWAY_SECONDS = 30  # clock skew tolerated between the company's servers and ours
MAX_SUBJECT_CHARS = 200


class IdentityInvalid(Exception):
    """The identity token was refused; the message says why (never the token itself)."""


@dataclass(frozen=True)
class Identity:
    subject: str
    email: str = ""
    name: str = ""


def identity_verify(*, secret: str, token: str) -> Identity:
    """Check ``token`` against the site's ``secret``. Raises :class:`IdentityInvalid` for a forged, tampered,
    expired or malformed token, or one without ``sub`` / ``exp``."""
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], options={"require": ["exp", "sub"]},
                            leeway=LEEWAY_SECONDS)
    except jwt.ExpiredSignatureError as exc:
        raise IdentityInvalid("identity token: expired") from exc
    except jwt.MissingRequiredClaimError as exc:
        raise IdentityInvalid(f"identity token: the '{exc.claim}' claim is required") from exc
    except jwt.InvalidSignatureError as exc:
        raise IdentityInvalid("identity token: the signature does not match this site's secret") from exc
    except jwt.InvalidTokenError as exc:
        raise IdentityInvalid(f"identity token: invalid ({type(exc).__name__})") from exc
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject.strip() or len(subject) > MAX_SUBJECT_CHARS:
        raise IdentityInvalid(f"identity token: 'sub' must be a non-empty string of at most {MAX_SUBJECT_CHARS} characters")
    email, name = claims.get("email", ""), claims.get("name", "")
    if not isinstance(email, str) or len(email) > 254 or (email and "@" not in email):
        raise IdentityInvalid("identity token: 'email' must be an email address")
    if not isinstance(name, str):
        raise IdentityInvalid("identity token: 'name' must be a string")
    return Identity(subject=subject, email=email, name=name[:200])


def identity_sign(*, secret: str, subject: str, email: str = "", name: str = "", ttl_seconds: int = 3600) -> str:
    """What the company's backend does (shown in the README; used by the demo and the tests)."""
    claims = {"sub": subject, "exp": int(time.time()) + ttl_seconds}
    if email:
        claims["email"] = email
    if name:
        claims["name"] = name
    return jwt.encode(claims, secret, algorithm=ALGORITHM)
