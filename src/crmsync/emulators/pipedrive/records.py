"""One stored record and the input checks every entity type shares.

v2 validates strictly: a boolean is `true`/`false` only, a number is never read from a string
[PD-v2mig]. The emulator also refuses body keys its entity does not know, so a client's typo
fails loudly instead of being dropped [INF]."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from .errors import bad_request
from .fields import ADDRESS_KEYS, FieldRegistry, check_custom_value, show_custom_value
from .values import is_date, is_int, is_number, parse_rfc3339_ms, rfc3339

# visible_to: 1 owner & followers, 3 entire company, 5/7 visibility groups [PD-spec-v2].
VISIBLE_TO = frozenset({1, 3, 5, 7})
DEFAULT_VISIBLE_TO = 3  # [INF]
MAX_CUSTOM_FIELDS_PARAM = 15  # `custom_fields=` query keys [PD-spec-v2]


@dataclass
class Record:
    id: int
    attrs: dict[str, Any]
    custom: dict[str, Any] = field(default_factory=dict)
    add_ms: int = 0
    update_ms: int = 0
    deleted_ms: int | None = None

    @property
    def is_deleted(self) -> bool:
        return self.deleted_ms is not None


class Account(Protocol):
    """What an entity type needs of the account to check references."""

    def user_exists(self, user_id: int) -> bool: ...
    def live(self, entity: str, record_id: int) -> Record | None: ...
    def all_live(self, entity: str) -> list[Record]: ...
    def registry(self, entity: str) -> FieldRegistry: ...
    def now_ms(self) -> int: ...
    def stages_of(self, pipeline_id: int) -> list[Record]: ...


class Body:
    """A write's JSON object with the checks of its values, each naming the key at fault."""

    def __init__(self, raw: Any, allowed: frozenset[str]) -> None:
        if not isinstance(raw, dict):
            raise bad_request("the request body must be a JSON object")
        unknown = set(raw) - allowed
        if unknown:
            raise bad_request(f"unknown parameters: {', '.join(sorted(unknown))}")
        self.raw: dict[str, Any] = raw

    def __contains__(self, key: str) -> bool:
        return key in self.raw

    def string(self, key: str, *, nullable: bool = False, non_empty: bool = False) -> str | None:
        value = self.raw[key]
        if value is None and nullable:
            return None
        if not isinstance(value, str) or (non_empty and not value.strip()):
            raise bad_request(f"{key} must be a {'non-empty ' if non_empty else ''}string")
        return value

    def integer(self, key: str, *, nullable: bool = False) -> int | None:
        value = self.raw[key]
        if value is None and nullable:
            return None
        if not is_int(value):
            raise bad_request(f"{key} must be an integer")
        return int(value)

    def number(self, key: str, *, nullable: bool = False) -> float | int | None:
        value = self.raw[key]
        if value is None and nullable:
            return None
        if not is_number(value):
            raise bad_request(f"{key} must be a number")
        return value

    def boolean(self, key: str) -> bool:
        value = self.raw[key]
        if not isinstance(value, bool):
            raise bad_request(f"{key} must be true or false")
        return value

    def date(self, key: str, *, nullable: bool = False) -> str | None:
        value = self.raw[key]
        if value is None and nullable:
            return None
        if not is_date(value):
            raise bad_request(f"{key} must be a date YYYY-MM-DD")
        return str(value)

    def instant_ms(self, key: str, *, nullable: bool = False) -> int | None:
        value = self.raw[key]
        if value is None and nullable:
            return None
        ms = parse_rfc3339_ms(value) if isinstance(value, str) else None
        if ms is None:
            raise bad_request(f"{key} must be an RFC 3339 date-time")
        return ms

    def int_list(self, key: str) -> list[int]:
        value = self.raw[key]
        if not isinstance(value, list) or not all(is_int(v) for v in value):
            raise bad_request(f"{key} must be an array of integers")
        return list(value)

    def visible_to(self) -> int:
        value = self.integer("visible_to")
        if value not in VISIBLE_TO:
            raise bad_request("visible_to must be one of 1, 3, 5, 7")
        return value

    def owner(self, acct: Account) -> int:
        value = self.integer("owner_id")
        assert value is not None
        if not acct.user_exists(value):
            raise bad_request(f"owner_id {value} is not a user of this company")
        return value

    def reference(self, key: str, entity: str, acct: Account) -> int | None:
        value = self.integer(key, nullable=True)
        if value is not None and acct.live(entity, value) is None:
            raise bad_request(f"{key} {value} does not name an existing {entity[:-1]}")
        return value

    def address(self, key: str) -> dict[str, str] | None:
        value = self.raw[key]
        if value is None:
            return None
        if (
            not isinstance(value, dict)
            or set(value) - ADDRESS_KEYS
            or not all(isinstance(v, str) for v in value.values())
        ):
            raise bad_request(f"{key} must be an address object of strings")
        return dict(value)

    def contacts(self, key: str) -> list[dict[str, Any]]:
        """emails / phones / im: `[{value, primary, label}]`; only `value` is required, `label`
        defaults to `work`, at most one `primary`, the first becomes primary if none is
        [PD-spec-v2][PD-v2mig]."""
        value = self.raw[key]
        if not isinstance(value, list):
            raise bad_request(f"{key} must be an array of {{value, primary, label}}")
        out = []
        for item in value:
            if not isinstance(item, dict) or set(item) - {"value", "primary", "label"}:
                raise bad_request(f"each of {key} is an object {{value, primary, label}}")
            if not isinstance(item.get("value"), str):
                raise bad_request(f"each of {key} needs a string value")
            primary = item.get("primary", False)
            if not isinstance(primary, bool):
                raise bad_request(f"{key}[].primary must be true or false")
            label = item.get("label", "work")
            if not isinstance(label, str):
                raise bad_request(f"{key}[].label must be a string")
            out.append({"value": item["value"], "primary": primary, "label": label})
        if sum(1 for c in out if c["primary"]) > 1:
            raise bad_request(f"only one of {key} can be primary")
        if out and not any(c["primary"] for c in out):
            out[0]["primary"] = True
        return out

    def custom_fields(self, registry: FieldRegistry, acct: Account) -> dict[str, Any]:
        value = self.raw["custom_fields"]
        if not isinstance(value, dict):
            raise bad_request("custom_fields must be an object keyed by field key")
        custom = registry.custom()
        out = {}
        for key, v in value.items():
            fdef = custom.get(key)
            if fdef is None:
                raise bad_request(f"custom_fields: {key} is not a custom field of this company")
            out[key] = check_custom_value(fdef, v, _exists(acct))
        return out


def _exists(acct: Account) -> Callable[[str, int], bool]:
    def exists(kind: str, record_id: int) -> bool:
        if kind == "user":
            return acct.user_exists(record_id)
        entity = {"org": "organizations", "people": "persons"}[kind]
        return acct.live(entity, record_id) is not None

    return exists


def custom_json(
    rec: Record,
    registry: FieldRegistry,
    *,
    option_labels: bool = False,
    keys: frozenset[str] | None = None,
) -> dict[str, Any]:
    """`custom_fields` of a record: every custom field of the account, null when unset
    [INF]; only `keys` when the request named some with `custom_fields=` [PD-spec-v2]."""
    out = {}
    for key, fdef in registry.custom().items():
        if keys is not None and key not in keys:
            continue
        out[key] = show_custom_value(fdef, rec.custom.get(key), option_labels)
    return out


def timestamps(rec: Record) -> tuple[str, str]:
    return rfc3339(rec.add_ms), rfc3339(rec.update_ms)


class EntityType:
    """One object type of the API: its path name, the keys a write may carry, how a body
    becomes stored attributes and how a record is shown."""

    name = ""  # path segment: persons, organizations, deals, pipelines, stages
    singular = ""  # webhook `meta.entity`
    label = ""  # error messages: "Person not found"
    has_custom_fields = False
    create_keys: frozenset[str] = frozenset()
    update_keys: frozenset[str] = frozenset()

    def check_create(self, body: Body, acct: Account, user_id: int) -> dict[str, Any]:
        """Stored attributes of a new record (an `add_time_ms` key sets its add time)."""
        raise NotImplementedError

    def check_update(self, rec: Record, body: Body, acct: Account) -> dict[str, Any]:
        """The attributes a PATCH changes (only those)."""
        raise NotImplementedError

    def to_json(
        self,
        rec: Record,
        acct: Account,
        *,
        option_labels: bool = False,
        keys: frozenset[str] | None = None,
    ) -> dict[str, Any]:
        raise NotImplementedError
