"""Match keys: what pairs a hub record with an app record before they are linked.

Contacts match on their normalised email, companies on their normalised name *or* domain, any
other object on a configured unique property. Keys carry a prefix (`email:`, `domain:`,
`name:`, `uid:`) so that different kinds never collide in the store's key index.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Any

# A practical subset of RFC 5322 addr-spec: what HubSpot and mail servers accept in real life.
# Quoted local parts and IP-literal domains are rejected on purpose (HubSpot rejects them too).
_LOCAL = r"[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_EMAIL_RE = re.compile(rf"^{_LOCAL}@(?:{_LABEL}\.)+[a-z]{{2,63}}$")
_DOMAIN_RE = re.compile(rf"^(?:{_LABEL}\.)+[a-z]{{2,63}}$")

# Trailing legal-form words dropped from company names so that "Acme Inc." matches "ACME".
# Only forms that denote a legal entity type and are common in CRM data: US/UK (inc, llc,
# ltd, corp, plc, llp, lp, co, company), DACH (gmbh, ag, kg), FR/ES/IT/PT (sa, sas, sarl,
# srl, spa, ltda), Benelux (bv, nv), Nordics (ab, as, oy), AU (pty). They are removed only at
# the end of the name and never when that would leave nothing.
_LEGAL_SUFFIXES = frozenset(
    {
        "inc", "incorporated", "llc", "ltd", "limited", "corp", "corporation", "co",
        "company", "plc", "llp", "lp", "gmbh", "ag", "kg", "sa", "sas", "sarl", "srl",
        "spa", "ltda", "bv", "nv", "ab", "as", "oy", "pty",
    }
)
_PUNCT_RE = re.compile(r"[^\w\s&]+")
_SPACE_RE = re.compile(r"\s+")


def _text(value: Any) -> str:
    if value is None:
        return ""
    return str(value)


def normalize_email(value: Any) -> str | None:
    """Trimmed, lower-cased email if it is syntactically valid, else None."""
    if isinstance(value, str):
        return _normalize_email_text(value)
    return _normalize_email_text(_text(value))


# A record's key is read several times per sync (pairing, inclusion, claiming): cached.
@lru_cache(maxsize=1 << 16)
def _normalize_email_text(value: str) -> str | None:
    """Trimmed, lower-cased email if it is syntactically valid, else None."""
    s = _text(value).strip().lower()
    if not s or len(s) > 254 or not _EMAIL_RE.match(s):
        return None
    if len(s.split("@", 1)[0]) > 64:
        return None
    return s


def normalize_domain(value: Any) -> str | None:
    """Host name of a domain or URL: scheme, credentials, `www.`, port and path removed."""
    if isinstance(value, str):
        return _normalize_domain_text(value)
    return _normalize_domain_text(_text(value))


@lru_cache(maxsize=1 << 16)
def _normalize_domain_text(value: str) -> str | None:
    """Host name of a domain or URL: scheme, credentials, `www.`, port and path removed."""
    s = _text(value).strip().lower()
    if not s:
        return None
    if "://" in s:
        s = s.split("://", 1)[1]
    elif s.startswith("//"):
        s = s[2:]
    s = re.split(r"[/?#]", s, maxsplit=1)[0]
    if "@" in s:
        s = s.rsplit("@", 1)[1]
    s = s.split(":", 1)[0].rstrip(".")
    if s.startswith("www."):
        s = s[4:]
    try:
        s = s.encode("idna").decode("ascii") if not s.isascii() else s
    except UnicodeError:
        return None
    if not _DOMAIN_RE.match(s):
        return None
    return s


def normalize_company_name(value: Any) -> str | None:
    """Case-, accent-width- and spacing-insensitive company name without a trailing legal form."""
    if isinstance(value, str):
        return _normalize_company_name_text(value)
    return _normalize_company_name_text(_text(value))


@lru_cache(maxsize=1 << 16)
def _normalize_company_name_text(value: str) -> str | None:
    """Case-, accent-width- and spacing-insensitive company name without a trailing legal form."""
    s = unicodedata.normalize("NFKC", _text(value)).casefold()
    # Dotted forms ("l.l.c.", "s.a.") become words before punctuation is dropped.
    s = re.sub(r"\b(?:[a-z]\.){2,}", lambda m: m.group(0).replace(".", ""), s)
    s = _PUNCT_RE.sub(" ", s)
    s = s.replace("&", " and ")
    words = _SPACE_RE.sub(" ", s).strip().split(" ")
    words = [w for w in words if w]
    if words and words[0] == "the" and len(words) > 1:
        words = words[1:]
    while len(words) > 1 and words[-1] in _LEGAL_SUFFIXES:
        words.pop()
    return " ".join(words) or None


def normalize_unique(value: Any) -> str | None:
    s = _text(value).strip()
    return s.lower() if s else None


def contact_keys(email: Any) -> tuple[str, ...]:
    e = normalize_email(email)
    return (f"email:{e}",) if e else ()


def company_keys(name: Any, domain: Any) -> tuple[str, ...]:
    keys = []
    d = normalize_domain(domain)
    if d:
        keys.append(f"domain:{d}")
    n = normalize_company_name(name)
    if n:
        keys.append(f"name:{n}")
    return tuple(keys)


def unique_keys(value: Any) -> tuple[str, ...]:
    v = normalize_unique(value)
    return (f"uid:{v}",) if v else ()
