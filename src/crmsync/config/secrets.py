"""Secrets given as an environment variable name (`*_env`) or a file path (`*_file`).

A `Secret` never shows its value in `repr`, `str` or an f-string; call `reveal()` at the one
place that sends it (an Authorization header, an HMAC key).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class SecretError(Exception):
    """A configured secret could not be read; the message names the variable or file, never a value."""


class Secret:
    __slots__ = ("_value", "source")

    def __init__(self, value: str, source: str) -> None:
        self._value = value
        self.source = source

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret(<redacted>, source={self.source!r})"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def credentials_path(path: str, base_dir: Path | None = None) -> Path:
    """Where a `*_file` secret lives.

    A relative path is looked up in `$CREDENTIALS_DIRECTORY` when systemd set it (LoadCredential),
    else next to the configuration file (`base_dir`), else in the working directory.
    """
    p = Path(path)
    if not p.is_absolute():
        creds = os.environ.get("CREDENTIALS_DIRECTORY")
        if creds:
            return Path(creds) / p
        if base_dir is not None:
            return base_dir / p
    return p


def read_secret(env: str | None, file: str | None, base_dir: Path | None = None) -> Secret:
    """Read a secret from exactly one of `env` / `file`.

    Raises SecretError naming what is missing. A file's trailing newline is stripped.
    """
    if env and file:
        raise SecretError("give either an environment variable or a file, not both")
    if env:
        if not _ENV_NAME.match(env):
            # Never echo it: this is often the secret itself pasted in the wrong place.
            raise SecretError("the value is not an environment variable name (letters, "
                              "digits and _); give the variable's name, not the secret")
        value = os.environ.get(env)
        if value is None:
            raise SecretError(f"environment variable {env} is not set")
        if not value.strip():
            raise SecretError(f"environment variable {env} is empty")
        return Secret(value.strip(), f"env:{env}")
    if file:
        p = credentials_path(file, base_dir)
        if "\0" in str(p):
            raise SecretError("the secret file path contains a NUL byte")
        try:
            value = p.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise SecretError(f"secret file {p} is not UTF-8 text") from None
        except FileNotFoundError:
            raise SecretError(f"secret file {p} does not exist") from None
        except PermissionError:
            raise SecretError(f"secret file {p} is not readable") from None
        except OSError as exc:
            raise SecretError(f"secret file {p} cannot be read: {exc.strerror}") from None
        if not value.strip():
            raise SecretError(f"secret file {p} is empty")
        return Secret(value.strip(), f"file:{p}")
    raise SecretError("no secret given: set the *_env or the *_file option")
