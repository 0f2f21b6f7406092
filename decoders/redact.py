"""Camera credentials never leave the decoder: every URL shown anywhere goes through ``redact``."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/@\s]+)@")
_SECRET_QUERY = re.compile(r"(?i)\b(password|passwd|pwd|pass|token|auth|key|secret|signature)=([^&\s]+)")


def redact_url(url: str) -> str:
    """``rtsp://user:pw@host/x?token=abc`` -> ``rtsp://***@host/x?token=***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_text(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = _SECRET_QUERY.sub(lambda m: f"{m.group(1)}=***", parts.query)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str) -> str:
    """Redact any URL userinfo and secret query values embedded in free text (e.g. FFmpeg errors)."""
    text = _USERINFO.sub(lambda m: f"{m.group('scheme')}***@", text)
    return _SECRET_QUERY.sub(lambda m: f"{m.group(1)}=***", text)
