"""Webhook request signatures, written here from HubSpot's description (fact sheet §8.3) and on
purpose sharing nothing with the connector's verifier."""

from __future__ import annotations

import base64
import hashlib
import hmac

# v3 signs the URI with these escapes decoded; the `?` starting the query stays as it is.
_DECODED = {
    "%3A": ":",
    "%2F": "/",
    "%3F": "?",
    "%40": "@",
    "%21": "!",
    "%24": "$",
    "%27": "'",
    "%28": "(",
    "%29": ")",
    "%2A": "*",
    "%2C": ",",
    "%3B": ";",
}


def decode_uri(uri: str) -> str:
    out = []
    i = 0
    while i < len(uri):
        chunk = uri[i : i + 3].upper()
        if uri[i] == "%" and chunk in _DECODED:
            out.append(_DECODED[chunk])
            i += 3
        else:
            out.append(uri[i])
            i += 1
    return "".join(out)


def signature_v1(client_secret: str, body: bytes) -> str:
    """`X-HubSpot-Signature` for `X-HubSpot-Signature-Version: v1`: hex SHA-256 of secret + body."""
    return hashlib.sha256(client_secret.encode() + body).hexdigest()


def signature_v3(client_secret: str, method: str, uri: str, body: bytes, timestamp_ms: int) -> str:
    """`X-HubSpot-Signature-v3`: base64 HMAC-SHA256 of method + decoded URI + body + timestamp."""
    message = method.encode() + decode_uri(uri).encode() + body + str(timestamp_ms).encode()
    digest = hmac.new(client_secret.encode(), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()
