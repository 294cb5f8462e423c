"""Host names, `HOST:PORT` listen addresses and URLs, as the configuration accepts them.

Each check returns what is wrong in plain words, or None. They look at the text only (no DNS,
no bind): `check-config` may run on another machine than the daemon, and a bind would collide
with the daemon already running. What only the bind can tell (an address in use, or not
local) is reported by `crmsync run` as a configuration error of the same setting.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse

# RFC 1123: letters, digits and inner hyphens, at most 63 bytes per label, 253 in all.
_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_DOTTED_NUMBERS = re.compile(r"^[0-9.]+$")


def host_problem(host: str) -> str | None:
    """What is wrong with `host` (a name, an IPv4 address, or an IPv6 address in brackets)."""
    if not host:
        return "the host is missing"
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return f"{host} is not an IPv6 address"
        return None
    if ":" in host:
        return f"an IPv6 address goes in brackets: [{host}]"
    if _DOTTED_NUMBERS.match(host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return f"{host} is not an IPv4 address (four numbers 0-255)"
        return None
    name = host[:-1] if host.endswith(".") else host
    try:
        name = name.encode("idna").decode("ascii")  # an internationalised name, as DNS sees it
    except UnicodeError:
        return f"{host!r} is not a host name (letters, digits, hyphens and dots)"
    if len(name) > 253 or not all(_LABEL.match(label) for label in name.split(".")):
        return f"{host!r} is not a host name (letters, digits, hyphens and dots)"
    return None


def listen_problem(listen: str) -> str | None:
    """What is wrong with a `HOST:PORT` to listen on (port 0: any free port)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isascii() or not port.isdigit():
        return "expected HOST:PORT, such as 127.0.0.1:8080 or [::1]:8080"
    if int(port) > 65535:
        return f"port {port} is out of range (0-65535)"
    return host_problem(host)


def url_problem(url: str) -> str | None:
    """What is wrong with an http(s) URL that crmsync calls or is called at."""
    if any(c.isspace() or ord(c) < 32 for c in url):
        return "must not contain spaces or control characters"
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:  # brackets that hold no IPv6 address
        return "has a bad host: not an IPv6 address in its brackets"
    if parts.scheme not in ("http", "https"):
        return "must start with http:// or https://"
    if not parts.hostname:
        return "has no host (expected http(s)://HOST[:PORT][/PATH])"
    if "@" in parts.netloc:
        return "must not carry a user or password (secrets go in *_env / *_file settings)"
    try:
        port = parts.port
    except ValueError:
        return "has a port out of range (1-65535)"
    if port == 0:
        return "has a port out of range (1-65535)"
    host = parts.hostname
    problem = host_problem(f"[{host}]" if ":" in host else host)
    return None if problem is None else f"has a bad host: {problem}"
