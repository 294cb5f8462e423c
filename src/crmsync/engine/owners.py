"""Record owners across the sides: HubSpot's `hubspot_owner_id` ⇄ an app field, paired by the
owner's email address (hubspot-onboarding.md §4: assign an owner by writing its owner `id`,
never its user id).

The `owner` transform's canonical value is the owner's email, lowercased. The app field holds
that email, or — when the mapping names an `owner_object` (a table of the app's users) — the
id of an app user, read and written through that table's email field. An `OwnerDirectory`
holds both sides' owners by id and by email; the runtime fills it (HubSpot's `/crm/v3/owners`,
the app's users table) and reads it again when a record names an owner it does not know.

An owner the other side does not know is not a reason to fail the record: writing the field
raises `SkipField`, and the decision goes on without it, with a field-level warning in its
history. An owner id the directory does not know reads as a placeholder (`?hub:ID`,
`?app:ID`), so that the field still compares (a change to a known owner is seen) and is never
written anywhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from crmsync.engine.transforms import SkipField, Transform
from crmsync.engine.types import Canon

UNKNOWN_HUB = "?hub:"
UNKNOWN_APP = "?app:"


def _text(v: Any) -> str | None:
    if v is None or isinstance(v, bool):
        return None
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    s = str(v).strip()
    return s or None


def normalize_email(v: Any) -> str | None:
    s = _text(v)
    return s.lower() if s else None


class OwnerDirectory:
    """Owners by id and by email: HubSpot's (`hub_*`) and the app's users (`app_*`, only for
    mappings through an owners table). Replaced whole by `set_hub` / `set_app`."""

    def __init__(self) -> None:
        self.hub_email: dict[str, str] = {}
        self.hub_id: dict[str, Any] = {}
        self.app_email: dict[str, str] = {}
        self.app_id: dict[str, Any] = {}

    def set_hub(self, owners: Iterable[tuple[Any, Any]]) -> None:
        """HubSpot's live owners as (owner id, email); owners without an email are kept out
        (a queue cannot be paired)."""
        self.hub_email, self.hub_id = _index(owners)

    def set_app(self, users: Iterable[tuple[Any, Any]]) -> None:
        """The app's users as (id, email)."""
        self.app_email, self.app_id = _index(users)

    def resolves(self, side: str, value: Any, *, through_table: bool, towards: str) -> bool:
        """Whether a raw `value` of `side` reads as a known owner and can be written on
        `towards` (the other side) — what tells the runtime to read the owners again."""
        if _text(value) is None:
            return True
        if side == "hub":
            email = self.hub_email.get(str(_text(value)))
        elif through_table:
            email = self.app_email.get(str(_text(value)))
        else:
            email = normalize_email(value)
        if email is None:
            return False
        if towards == "hub":
            return email in self.hub_id
        return not through_table or email in self.app_id


def _index(pairs: Iterable[tuple[Any, Any]]) -> tuple[dict[str, str], dict[str, Any]]:
    """(id as text → email, email → the id as given: an app's integer key stays one)."""
    by_id: dict[str, str] = {}
    by_email: dict[str, Any] = {}
    for oid, email in pairs:
        key, mail = _text(oid), normalize_email(email)
        if key is None or mail is None:
            continue
        by_id[key] = mail
        by_email.setdefault(mail, oid)  # two owners with one email: the first listed
    return by_id, by_email


def owner_transform(directory: OwnerDirectory, *, through_table: bool) -> Transform:
    """The `owner` transform over `directory` (see the module docstring)."""

    def hub_canon(v: Any) -> Canon:
        oid = _text(v)
        if oid is None:
            return None
        return directory.hub_email.get(oid) or f"{UNKNOWN_HUB}{oid}"

    def app_canon(v: Any) -> Canon:
        if not through_table:
            return normalize_email(v)
        uid = _text(v)
        if uid is None:
            return None
        return directory.app_email.get(uid) or f"{UNKNOWN_APP}{uid}"

    def to_hub(c: Canon) -> str:
        if c is None:
            return ""
        if c.startswith(UNKNOWN_APP):
            raise SkipField(f"app user {c[len(UNKNOWN_APP):]} is not in the owners table")
        if c.startswith(UNKNOWN_HUB):
            raise SkipField(f"HubSpot owner {c[len(UNKNOWN_HUB):]} is unknown")
        oid = directory.hub_id.get(c)
        if oid is None:
            raise SkipField(f"{c} is not a HubSpot owner")
        return str(oid)

    def to_app(c: Canon) -> Any:
        if c is None:
            return None
        if c.startswith(UNKNOWN_HUB):
            raise SkipField(f"HubSpot owner {c[len(UNKNOWN_HUB):]} is unknown (archived, or "
                            "not among the owners HubSpot lists)")
        if c.startswith(UNKNOWN_APP):
            raise SkipField(f"app user {c[len(UNKNOWN_APP):]} is not in the owners table")
        if not through_table:
            return c
        uid = directory.app_id.get(c)
        if uid is None:
            raise SkipField(f"{c} is not a user in the app's owners table")
        return uid

    return Transform("owner", hub_canon, app_canon, to_hub, to_app)
