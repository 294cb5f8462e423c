"""The OAuth refresh token kept in a file of the state directory.

`crmsync connect hubspot` writes it there, and the daemon writes every refresh token HubSpot
hands back (rotation is undocumented, hubspot-onboarding.md §1 open item 1: every answer's token
is kept). A write replaces the file atomically — a new file (mode 0600) in the same directory,
written and fsync'ed, renamed over the old one, then the directory fsync'ed — so a crash at
any instant leaves either the old token or the new one, never a torn or empty file.

A token file given as a systemd credential (under `$CREDENTIALS_DIRECTORY`), or in a directory
the service may not write, cannot take a rotated token: `writable_token_file` says None and the
daemon keeps rotations in its state database instead.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from crmsync.config.model import OAuthAuth
from crmsync.config.secrets import SecretError, credentials_path, read_secret

_SUFFIX = ".tmp"


def token_path(auth: OAuthAuth, base_dir: Path | None) -> Path | None:
    """Where `auth.refresh_token_file` is (None: the token comes from the environment)."""
    if not auth.refresh_token_file:
        return None
    return credentials_path(auth.refresh_token_file, base_dir)


def writable_token_file(auth: OAuthAuth, base_dir: Path | None) -> Path | None:
    """The refresh token file the daemon may replace, or None: none is configured, it is a
    systemd credential (immutable while the service runs), or its directory is not writable
    (a read-only mount under ProtectSystem=strict)."""
    path = token_path(auth, base_dir)
    if path is None:
        return None
    creds = os.environ.get("CREDENTIALS_DIRECTORY")
    if creds and path.resolve().is_relative_to(Path(creds).resolve()):
        return None
    if not os.access(path.parent, os.W_OK | os.X_OK):
        return None
    return path


def read_token_file(path: Path) -> str | None:
    """The token the file holds now (None: it is empty). Bounded like every secret read;
    raises OSError when it cannot be read."""
    try:
        return read_secret(None, str(path)).reveal()
    except SecretError as exc:
        raise OSError(str(exc)) from None


def write_token_file(path: Path, token: str) -> None:
    """Replace the content of `path` with `token` (and a newline), atomically, mode 0600,
    keeping the file's owner where this process may (root).

    Blocking I/O: run it off the event loop. Leftovers of writes cut short by a crash (hidden
    `.NAME.*.tmp` files next to it) are removed. Raises OSError when it cannot be written; the
    old file is then unchanged.
    """
    if not token or "\n" in token or "\r" in token:
        raise ValueError("a refresh token is one non-empty line")
    directory = path.parent
    prefix = f".{path.name}."
    for stale in directory.glob(f"{prefix}*{_SUFFIX}"):
        with contextlib.suppress(OSError):
            stale.unlink()
    try:
        owner: os.stat_result | None = path.stat()
    except FileNotFoundError:
        owner = None
    # mkstemp creates the file with mode 0600 (O_EXCL), whatever the umask.
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=_SUFFIX, dir=directory)
    try:
        try:
            if owner is not None and (owner.st_uid, owner.st_gid) != (os.geteuid(),
                                                                      os.getegid()):
                # The replacement keeps the file's owner: root running `crmsync doctor` or
                # `connect` next to the service must not leave the service a token it cannot
                # read. Only root may give a file away; anyone else writes it as their own.
                with contextlib.suppress(PermissionError):
                    os.fchown(fd, owner.st_uid, owner.st_gid)
            data = (token + "\n").encode("utf-8")
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    # The rename itself is durable only once the directory is.
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
