"""Secrets given as an environment variable name (`*_env`) or a file path (`*_file`).

A `Secret` never shows its value in `repr`, `str` or an f-string; call `reveal()` at the one
place that sends it (an Authorization header, an HMAC key).

A secret file is read with bounds, so that no configuration can hang or exhaust the daemon:
only a regular file (a FIFO would block until someone writes to it, `/dev/zero` never ends),
opened without blocking, at most `MAX_SECRET_BYTES`. The read is a plain system call on a
regular file; callers inside the daemon still run it in a worker thread, off the event loop.

The value of a `*_file` / `*_env` setting is often the secret itself, pasted into the wrong
field. So no message or source label shows a setting's value unless it is plainly a path or a
variable name (`shown_path`, `shown_variable`).
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# Tokens, client secrets and refresh tokens are tens of bytes; a PEM key a few KiB.
MAX_SECRET_BYTES = 4096

# A word of a file or variable name: letters, maybe followed by a short number ("token2",
# "na1"), or a short number alone ("2024"). Random secrets mix digits into their letters
# ("5f2c9e1d") and fail this.
_WORD = re.compile(r"[A-Za-z]{1,32}[0-9]{0,4}|[0-9]{1,4}")
_PATH_SEPARATORS = re.compile(r"[/._-]")
HIDDEN = "(name not shown: it looks like a secret rather than a file name or variable name)"


class SecretError(Exception):
    """A configured secret could not be read; the message names the variable or file, never a value."""


class Secret:
    __slots__ = ("_value", "source", "warning")

    def __init__(self, value: str, source: str, warning: str = "") -> None:
        self._value = value
        self.source = source
        # Set when the secret was read but is kept unsafely (a file others may read).
        self.warning = warning

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


def _plain_words(parts: list[str], *, one_case: bool) -> bool:
    words = [w for w in parts if w]
    if not words:
        return False
    for w in words:
        if not _WORD.fullmatch(w):
            return False
        letters = w.rstrip("0123456789")
        if letters and not (letters.isupper() or letters.islower()
                            or (not one_case and letters.istitle())):
            return False
    return True


def is_plain_path(value: str) -> bool:
    """Does `value` plainly read as a file path (words joined by / . _ -), not a secret?"""
    return len(value) <= 255 and _plain_words(_PATH_SEPARATORS.split(value), one_case=False)


def is_plain_variable(value: str) -> bool:
    """Does `value` plainly read as an environment variable name (`HUBSPOT_TOKEN`)?"""
    return (len(value) <= 128 and bool(_ENV_NAME.match(value))
            and _plain_words(value.split("_"), one_case=True))


def shown_variable(name: str) -> str:
    """`name` for a message, or a note that it is hidden (it reads like a secret)."""
    return name if is_plain_variable(name) else HIDDEN


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


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "directory"), (stat.S_ISFIFO, "FIFO (named pipe)"),
                       (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
                       (stat.S_ISSOCK, "socket")):
        if test(mode):
            return name
    return "special file"


def _read_file(p: Path, name: str) -> tuple[bytes, int]:
    """The bytes of the regular file `p` (at most MAX_SECRET_BYTES) and its mode bits.

    Checked before opening (opening some devices has effects) and again on the open file
    (the path may have been swapped in between); opened non-blocking, so that even a FIFO
    put there meanwhile cannot make the open wait for a writer.
    """
    try:
        before = os.stat(p)
        if not stat.S_ISREG(before.st_mode):
            raise SecretError(f"secret file {name} is a {_kind(before.st_mode)}, not a "
                              "regular file")
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise SecretError(f"secret file {name} does not exist") from None
    except PermissionError:
        raise SecretError(f"secret file {name} is not readable") from None
    except OSError as exc:
        raise SecretError(f"secret file {name} cannot be read: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SecretError(f"secret file {name} is a {_kind(st.st_mode)}, not a regular file")
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_SECRET_BYTES:
            chunk = os.read(fd, MAX_SECRET_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > MAX_SECRET_BYTES:
            raise SecretError(f"secret file {name} is larger than {MAX_SECRET_BYTES} bytes: "
                              "a secret is one line; is this the right file?")
        return b"".join(chunks), stat.S_IMODE(st.st_mode)
    except OSError as exc:
        raise SecretError(f"secret file {name} cannot be read: {exc.strerror}") from None
    finally:
        os.close(fd)


def read_secret(env: str | None, file: str | None, base_dir: Path | None = None) -> Secret:
    """Read a secret from exactly one of `env` / `file`.

    Raises SecretError naming what is missing (never the value, nor a setting that reads like
    a secret). A file's trailing newline is stripped. A file that group or others may access
    is read, with `Secret.warning` saying so and how to fix it. Blocking I/O, bounded (see the
    module docstring): run it off the event loop.
    """
    if env and file:
        raise SecretError("give either an environment variable or a file, not both")
    if env:
        if not _ENV_NAME.match(env):
            # Never echo it: this is often the secret itself pasted in the wrong place.
            raise SecretError("the value is not an environment variable name (letters, "
                              "digits and _); give the variable's name, not the secret")
        shown = shown_variable(env)
        value = os.environ.get(env)
        if value is None:
            raise SecretError(f"environment variable {shown} is not set")
        if len(value.encode("utf-8", "surrogateescape")) > MAX_SECRET_BYTES:
            raise SecretError(f"environment variable {shown} holds more than "
                              f"{MAX_SECRET_BYTES} bytes: is it the right variable?")
        if not value.strip():
            raise SecretError(f"environment variable {shown} is empty")
        return Secret(value.strip(), f"env:{shown}")
    if file:
        if "\0" in file:
            raise SecretError("the secret file path contains a NUL byte")
        p = credentials_path(file, base_dir)
        plain = is_plain_path(file)
        if plain:
            name = str(p)
        elif Path(file).is_absolute():
            name = HIDDEN
        else:  # the directory it was looked up in is no part of the value
            name = f"{HIDDEN} in {Path(os.path.abspath(credentials_path('x', base_dir))).parent}"
        data, mode = _read_file(p, name)
        try:
            value = data.decode("utf-8")
        except UnicodeDecodeError:
            raise SecretError(f"secret file {name} is not UTF-8 text") from None
        if not value.strip():
            raise SecretError(f"secret file {name} is empty")
        warning = ""
        if mode & 0o077:
            # As ssh does for a private key: usable by more than its owner.
            fix = f"`chmod 600 {p}`" if plain else "`chmod 600` on it"
            warning = (f"secret file {name} is accessible by group or others (mode "
                       f"{mode:04o}): run {fix}")
        return Secret(value.strip(), f"file:{name}", warning)
    raise SecretError("no secret given: set the *_env or the *_file option")
