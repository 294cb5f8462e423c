"""The account's owners and users (hubspot-onboarding.md §4): read-only over HubSpot's API
(`/crm/v3/owners`, `/settings/v3/users`), managed through the emulator's admin API."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import not_found, validation_error
from .properties import Option
from .values import iso_from_ms

# The owner every account starts with: the user who created it [INF] (owners are created
# automatically for new users, hubspot-onboarding.md §4).
DEFAULT_OWNER = {"email": "admin@example.com", "firstName": "Account", "lastName": "Admin"}


@dataclass
class Owner:
    id: int
    user_id: int | None  # None for a QUEUE owner
    email: str | None
    first_name: str | None
    last_name: str | None
    type: str  # PERSON | QUEUE
    created_ms: int
    updated_ms: int
    teams: list[dict[str, Any]] = field(default_factory=list)
    archived: bool = False
    super_admin: bool = False

    def to_json(self) -> dict[str, Any]:
        """PublicOwner (SPEC `CRM/Crm Owners/…/v3/crmOwners.json`). An archived owner keeps its
        id, its `userId` becomes null and the user id stays in `userIdIncludingInactive`
        (hubspot-onboarding.md §4)."""
        out: dict[str, Any] = {
            "id": str(self.id),
            "type": self.type,
            "archived": self.archived,
            "createdAt": iso_from_ms(self.created_ms),
            "updatedAt": iso_from_ms(self.updated_ms),
        }
        if self.email is not None:
            out["email"] = self.email
        if self.first_name is not None:
            out["firstName"] = self.first_name
        if self.last_name is not None:
            out["lastName"] = self.last_name
        if self.user_id is not None:
            out["userId"] = None if self.archived else self.user_id
            out["userIdIncludingInactive"] = self.user_id
        out["teams"] = list(self.teams)
        return out

    def user_json(self) -> dict[str, Any]:
        """PublicUser: `id, email, roleIds, superAdmin` required, names optional
        (hubspot-onboarding.md §4)."""
        assert self.user_id is not None
        out: dict[str, Any] = {
            "id": str(self.user_id),
            "email": self.email or "",
            "roleIds": [],
            "superAdmin": self.super_admin,
        }
        if self.first_name is not None:
            out["firstName"] = self.first_name
        if self.last_name is not None:
            out["lastName"] = self.last_name
        primary = next((t for t in self.teams if t.get("primary")), None)
        if primary is not None:
            out["primaryTeamId"] = str(primary["id"])
        secondary = [str(t["id"]) for t in self.teams if not t.get("primary")]
        if secondary:
            out["secondaryTeamIds"] = secondary
        return out


class Owners:
    """Owners in id order; ids and user ids are handed out increasing [INF]."""

    def __init__(self, now_ms: Callable[[], int]) -> None:
        self.now_ms = now_ms
        self.reset()

    def reset(self) -> None:
        self._owners: dict[int, Owner] = {}
        self._next_id = 70_000_001
        self._next_user_id = 9_000_001
        # Like the default pipelines, the account's first owner dates from epoch 0 [INF]
        # (and the emulator can be built before its clock runs).
        self.add(DEFAULT_OWNER, super_admin=True, at_ms=0)

    def add(self, body: Any, *, super_admin: bool = False, at_ms: int | None = None) -> Owner:
        """A new owner from `{email, firstName?, lastName?, type?, teams?}`. A PERSON owner is
        also a user of the account."""
        if not isinstance(body, dict):
            raise validation_error("An owner is an object")
        kind = str(body.get("type", "PERSON"))
        if kind not in ("PERSON", "QUEUE"):
            raise validation_error(f"type must be PERSON or QUEUE, not {kind}")
        email = body.get("email")
        if kind == "PERSON":
            if not isinstance(email, str) or "@" not in email:
                raise validation_error("A PERSON owner needs an email")
            if self.by_email(email) is not None:
                raise validation_error(f"An owner with email {email} already exists")
        teams = body.get("teams") or []
        if not isinstance(teams, list) or not all(
            isinstance(t, dict) and "id" in t and "name" in t for t in teams
        ):
            raise validation_error("teams is a list of {id, name, primary}")
        now = self.now_ms() if at_ms is None else at_ms
        owner = Owner(
            id=self._next_id,
            user_id=self._next_user_id if kind == "PERSON" else None,
            email=email if isinstance(email, str) else None,
            first_name=_opt_str(body.get("firstName")),
            last_name=_opt_str(body.get("lastName")),
            type=kind,
            created_ms=now,
            updated_ms=now,
            teams=[
                {"id": str(t["id"]), "name": str(t["name"]), "primary": bool(t.get("primary"))}
                for t in teams
            ],
            super_admin=super_admin or bool(body.get("superAdmin", False)),
        )
        self._next_id += 1
        if kind == "PERSON":
            self._next_user_id += 1
        self._owners[owner.id] = owner
        return owner

    def update(self, owner_id: str, body: Any) -> Owner:
        owner = self.get(owner_id, archived=False)
        if not isinstance(body, dict):
            raise validation_error("An owner update is an object")
        for key, attr in (("email", "email"), ("firstName", "first_name"), ("lastName", "last_name")):
            if key in body:
                setattr(owner, attr, _opt_str(body[key]))
        # `updatedAt` moves only when the owner record changes (hubspot-onboarding.md §4).
        owner.updated_ms = self.now_ms()
        return owner

    def archive(self, owner_id: str) -> Owner:
        owner = self.get(owner_id, archived=False)
        owner.archived = True
        owner.updated_ms = self.now_ms()
        return owner

    def get(self, key: str, *, id_property: str = "id", archived: bool = False) -> Owner:
        """By owner id or (`idProperty=userId`) user id; 404 when absent or not in the asked
        archived state."""
        try:
            wanted = int(key)
        except ValueError:
            raise not_found(f"No owner with {id_property} {key}") from None
        if id_property == "id":
            owner = self._owners.get(wanted)
        elif id_property == "userId":
            owner = next((o for o in self._owners.values() if o.user_id == wanted), None)
        else:
            raise validation_error(f"idProperty must be id or userId, not {id_property}")
        if owner is None or owner.archived != archived:
            raise not_found(f"No owner with {id_property} {key}")
        return owner

    def by_email(self, email: str) -> Owner | None:
        wanted = email.strip().lower()
        return next(
            (o for o in self._owners.values() if (o.email or "").lower() == wanted and not o.archived),
            None,
        )

    def page(
        self, *, email: str | None, after: int, limit: int, archived: bool
    ) -> tuple[list[Owner], int | None]:
        """Owners with id ≥ `after` (the cursor is the next owner's id [INF]); `archived=true`
        lists only archived owners (hubspot-onboarding.md §4)."""
        wanted = email.strip().lower() if email else None
        matching = [
            o
            for o in self._owners.values()
            if o.id >= after
            and o.archived == archived
            and (wanted is None or (o.email or "").lower() == wanted)
        ]
        if len(matching) > limit:
            return matching[:limit], matching[limit].id
        return matching, None

    def users(self) -> list[Owner]:
        """Live PERSON owners: the account's users."""
        return [o for o in self._owners.values() if o.user_id is not None and not o.archived]

    def is_live(self, owner_id: str) -> bool:
        try:
            owner = self._owners.get(int(owner_id))
        except ValueError:
            return False
        return owner is not None and not owner.archived

    def options(self) -> list[Option]:
        """`hubspot_owner_id` options: value the owner id, label the name or email."""
        return [
            Option(_label(o), str(o.id), i)
            for i, o in enumerate(o for o in self._owners.values() if not o.archived)
        ]

    def all(self) -> list[Owner]:
        return list(self._owners.values())


def _label(o: Owner) -> str:
    name = " ".join(p for p in (o.first_name, o.last_name) if p)
    return name or o.email or str(o.id)


def _opt_str(raw: Any) -> str | None:
    return None if raw is None else str(raw)
