"""Redaction of secrets (database passwords, webhook tokens) from any text the engine prints or stores."""

from __future__ import annotations

import re

# user:password@ in any URL, and the token part of a Discord webhook URL. Linear in the text:
# a scheme starts where a run of scheme characters starts (else a long word is re-scanned from
# each of its letters), and a password is at most 256 characters before its @.
_URL_PASSWORD = re.compile(
    r"(?P<prefix>(?<![a-z0-9+.-])[a-z][a-z0-9+.-]*://[^:/@\s]*:)(?P<secret>[^@\s]{1,256})(?=@)",
    re.I,
)
_WEBHOOK_TOKEN = re.compile(r"(?P<prefix>/api/webhooks/\d+/)(?P<secret>[A-Za-z0-9._-]+)")
_PASSWORD_KV = re.compile(
    r"(?P<prefix>\bpassword\s*[=:]\s*)(?P<secret>'[^']*'|\"[^\"]*\"|\S+)", re.I
)

MASK = "***"


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Mask URL passwords, webhook tokens, `password=` pairs and any literal secret given."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    for pattern in (_URL_PASSWORD, _WEBHOOK_TOKEN, _PASSWORD_KV):
        text = pattern.sub(lambda m: m.group("prefix") + MASK, text)
    return text
