"""Pipedrive v2 records ⇄ crmsync's flat properties (see fields.py for the names).

Reading: built-in attributes as they come (ids and numbers stay numbers), `email` / `phone`
the value of the `primary` entry of `emails` / `phones` (the first entry when none is marked:
that is the one Pipedrive makes primary [PD-spec-v2]), `emails` / `phones` every value joined
with "; ", `domain` the host of `website` (or the configured custom field's value), custom
fields under their labels: enum/set option ids as their labels (a set joined with ";"),
monetary as its amount, an address as its text.

Writing builds a v2 body, strictly typed (numbers never as strings, booleans true/false
[PD-v2mig]): a new `email` replaces the primary entry of `emails` and keeps the others (the
current array comes from the caller), `domain` goes to `website` or the custom field, option
labels become option ids. A value that cannot be written raises `ValueProblem` naming the
field, and that record fails with `invalid_value`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from crmsync.connectors.pipedrive.fields import Catalog, CatalogError, FieldDef
from crmsync.records import Record

_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class ValueProblem(ValueError):
    """A value that cannot be written to Pipedrive; the message names the field."""


def to_ms(value: Any) -> int:
    """Epoch ms of an RFC 3339 time (v2) or `YYYY-MM-DD HH:MM:SS` in UTC (v1) [PD-v2mig]."""
    if not isinstance(value, str) or not value:
        return 0
    text = value.strip().replace(" ", "T")
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        return 0
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def rfc3339(ms: int) -> str:
    """The second `ms` falls in, as v2's filters take it (`2024-01-01T00:00:00Z`)."""
    return datetime.fromtimestamp(ms // 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def domain_of(value: Any) -> str | None:
    """The host name of a website or domain: scheme, credentials, port, path and a leading
    `www.` removed, lower-cased (the same reading HubSpot's domain gets when matching)."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip().lower()
    if "://" not in text:
        text = "//" + text.lstrip("/")
    try:
        host = urlsplit(text).hostname or ""
    except ValueError:
        return None
    host = host.rstrip(".")
    if host.startswith("www."):
        host = host[4:]
    return host or None


def primary(entries: Any) -> str | None:
    """The primary value of an emails / phones array (the first when none is marked)."""
    if not isinstance(entries, list):
        return None
    values = [e for e in entries if isinstance(e, dict) and e.get("value")]
    if not values:
        return None
    chosen = next((e for e in values if e.get("primary") is True), values[0])
    return str(chosen["value"])


def with_primary(entries: Any, value: Any) -> list[dict[str, Any]]:
    """The array with its primary value replaced by `value` (added as primary when there was
    none; removed when `value` is empty, the next entry then becoming primary). The other
    entries, their labels and order are kept."""
    current = [dict(e) for e in entries or [] if isinstance(e, dict) and e.get("value")]
    text = None if value is None or str(value).strip() == "" else str(value).strip()
    at = next((i for i, e in enumerate(current) if e.get("primary") is True),
              0 if current else None)
    if text is None:
        if at is not None:
            current.pop(at)
        if current and not any(e.get("primary") is True for e in current):
            current[0]["primary"] = True
        return [{k: v for k, v in e.items() if k in ("value", "primary", "label")}
                for e in current]
    # The new value may already be a secondary entry: it becomes the primary one.
    current = [e for i, e in enumerate(current)
               if i == at or str(e.get("value")).strip().casefold() != text.casefold()]
    at = next((i for i, e in enumerate(current) if e.get("primary") is True),
              0 if current else None)
    if at is None:
        current.insert(0, {"value": text, "primary": True, "label": "work"})
    else:
        current[at] = {**current[at], "value": text, "primary": True}
    for i, e in enumerate(current):
        if i != at and e.get("primary") is True:
            e["primary"] = False
    return [{k: v for k, v in e.items() if k in ("value", "primary", "label")} for e in current]


# --- reading ---------------------------------------------------------------------------------


def _custom_value(fdef: FieldDef, raw: Any) -> Any:
    if raw is None:
        return None
    kind = fdef.kind
    if kind == "enum":
        if isinstance(raw, dict):
            raw = raw.get("id")
        return fdef.options.get(raw, str(raw)) if isinstance(raw, int) else raw
    if kind == "set":
        items = raw if isinstance(raw, list) else [raw]
        labels = []
        for v in items:
            if isinstance(v, dict):
                v = v.get("id")
            labels.append(fdef.options.get(v, str(v)) if isinstance(v, int) else str(v))
        return ";".join(labels)
    if kind in ("monetary", "address") and isinstance(raw, dict):
        return raw.get("value")
    if kind == "range" and isinstance(raw, dict):
        return f"{raw.get('start')}/{raw.get('end')}"
    return raw


def flatten(entity: str, raw: Mapping[str, Any], catalog: Catalog, domain_field: FieldDef
            ) -> dict[str, Any]:
    """The flat properties of one v2 record (see the module docstring)."""
    props: dict[str, Any] = {}
    for fdef in catalog.by_name.values():
        kind = fdef.kind
        if kind in ("emails", "phones"):
            props[fdef.name] = primary(raw.get(fdef.key))
        elif fdef.name in ("emails", "phones"):
            values = [str(e.get("value")) for e in raw.get(fdef.name) or []
                      if isinstance(e, dict) and e.get("value")]
            props[fdef.name] = "; ".join(values) or None
        elif kind == "address":
            addr = raw.get(fdef.key)
            props[fdef.name] = addr.get("value") if isinstance(addr, dict) else addr
        elif kind == "domain":
            continue
        elif kind == "stage":
            status = raw.get("status")
            props[fdef.name] = status if status in ("won", "lost") else raw.get("stage_id")
        else:
            props[fdef.name] = raw.get(fdef.key)
    if entity == "organizations":
        addr = raw.get("address") if isinstance(raw.get("address"), dict) else {}
        props["city"] = addr.get("locality") if addr else None
        props["country"] = addr.get("country") if addr else None
    custom = raw.get("custom_fields") or {}
    if isinstance(custom, dict):
        for key, fdef in catalog.custom.items():
            value = _custom_value(fdef, custom.get(key))
            props[key] = value
            if fdef.name != key and fdef.name not in catalog.ambiguous:
                props.setdefault(fdef.name, value)
    if entity == "organizations":
        source = (custom.get(domain_field.key) if domain_field.custom and isinstance(custom, dict)
                  else raw.get(domain_field.key))
        props["domain"] = domain_of(_custom_value(domain_field, source)
                                    if domain_field.custom else source)
    return props


def to_record(entity: str, raw: Mapping[str, Any], catalog: Catalog,
              domain_field: FieldDef) -> Record:
    deleted = bool(raw.get("is_deleted")) or (entity == "deals" and bool(raw.get("is_archived")))
    return Record(id=str(raw["id"]), properties=flatten(entity, raw, catalog, domain_field),
                  updated_at=to_ms(raw.get("update_time")), archived=deleted)


# --- writing ---------------------------------------------------------------------------------


def _number(fdef: FieldDef, value: Any) -> int | float:
    if isinstance(value, bool):
        raise ValueProblem(f"{fdef.name}: {value!r} is not a number")
    if isinstance(value, int | float):
        return value
    text = str(value).strip()
    if not _NUMBER.match(text):
        raise ValueProblem(f"{fdef.name}: {text[:40]!r} is not a number")
    n = float(text)
    return int(n) if n.is_integer() and abs(n) < 2**53 and "." not in text else n


def _int(fdef: FieldDef, value: Any) -> int:
    n = _number(fdef, value)
    if isinstance(n, float):
        if not n.is_integer():
            raise ValueProblem(f"{fdef.name}: {value!r} is not a whole number")
        n = int(n)
    return n


def wire_value(fdef: FieldDef, value: Any) -> Any:
    """A flat value as v2 takes it for `fdef` (None / "" clears the field)."""
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return None
    kind = fdef.kind
    if kind == "int":
        return _int(fdef, value)
    if kind in ("number", "monetary"):
        return _number(fdef, value)
    if kind == "bool":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text not in ("true", "false"):
            raise ValueProblem(f"{fdef.name}: {value!r} is not true or false")
        return text == "true"
    if kind == "date":
        text = str(value).strip()[:10]
        if not _DATE.match(text):
            raise ValueProblem(f"{fdef.name}: {value!r} is not a date YYYY-MM-DD")
        return text
    if kind == "enum":
        if isinstance(value, int) and value in fdef.options:
            return value
        oid = fdef.option_id(str(value))
        if oid is None:
            raise ValueProblem(f"{fdef.name}: {str(value)[:60]!r} is not one of its options "
                               f"({', '.join(fdef.options.values())})")
        return oid
    if kind == "set":
        parts = value if isinstance(value, list) else str(value).split(";")
        ids = []
        for part in parts:
            if str(part).strip() == "":
                continue
            oid = fdef.option_id(str(part))
            if oid is None:
                raise ValueProblem(f"{fdef.name}: {str(part)[:60]!r} is not one of its options "
                                   f"({', '.join(fdef.options.values())})")
            ids.append(oid)
        return sorted(set(ids)) or None
    if kind == "address":
        return {"value": str(value)}
    return value if isinstance(value, str) else str(value)


class BodyBuilder:
    """Builds v2 request bodies for one object of one account."""

    def __init__(self, entity: str, catalog: Catalog, domain_field: FieldDef,
                 default_currency: str = "USD") -> None:
        self.entity = entity
        self.catalog = catalog
        self.domain_field = domain_field
        self.default_currency = default_currency

    def needs_current(self, changes: Mapping[str, Any]) -> bool:
        """Whether building an update needs the record's current emails / phones arrays."""
        return self.entity == "persons" and bool({"email", "phone"} & set(changes))

    def body(self, values: Mapping[str, Any], current: Mapping[str, Any] | None = None, *,
             create: bool = False) -> dict[str, Any]:
        """The v2 body writing `values` (flat names); `current` holds the record's raw
        `emails` / `phones` arrays for an update that changes the primary value."""
        out: dict[str, Any] = {}
        custom: dict[str, Any] = {}
        for name, value in values.items():
            try:
                fdef = self.catalog.resolve(name)
            except CatalogError as exc:
                raise ValueProblem(str(exc)) from None
            if fdef.read_only:
                raise ValueProblem(f"{self.entity} field {name!r} is read-only")
            if fdef.kind in ("emails", "phones"):
                out[fdef.key] = with_primary((current or {}).get(fdef.key), value)
                continue
            if fdef.kind == "domain":
                fdef = self.domain_field
            if fdef.kind == "stage":
                text = "" if value is None else str(value).strip()
                if text in ("won", "lost"):
                    out["status"] = text
                elif text:
                    out["stage_id"] = _int(fdef, text)
                    out["status"] = "open"
                continue
            wire = wire_value(fdef, value)
            if fdef.custom:
                if fdef.kind == "monetary" and wire is not None:
                    wire = {"value": wire, "currency": self.default_currency}
                custom[fdef.key] = wire
            else:
                out[fdef.key] = wire
        if custom:
            out["custom_fields"] = custom
        if "stage_id" in out and out["stage_id"] is not None:
            # A stage implies its pipeline [PD-spec-v2]; sending both only risks a mismatch.
            out.pop("pipeline_id", None)
        if self.entity == "deals" and out.get("status") not in (None, "open", "won", "lost"):
            raise ValueProblem(f"status: {out['status']!r} is not open, won or lost")
        if create:
            self._complete(out, values)
        return out

    def _complete(self, out: dict[str, Any], values: Mapping[str, Any]) -> None:
        """What a create needs besides the mapped values: a person or an organization needs a
        name [PD-spec-v2]; when the mapped values hold none, the closest thing they do hold."""
        for key in [k for k, v in out.items() if v is None]:
            del out[key]  # a create sets nothing to null
        if self.entity == "persons" and not out.get("name") and not (
                out.get("first_name") and out.get("last_name")):
            parts = [str(out.get(k) or "").strip() for k in ("first_name", "last_name")]
            name = " ".join(p for p in parts if p) or _first(
                [primary(out.get("emails")), primary(out.get("phones"))])
            if not name:
                raise ValueProblem("a Pipedrive person needs a name (or an email or phone "
                                   "to name it after)")
            out["name"] = name
        if self.entity == "organizations" and not out.get("name"):
            name = _first([domain_of(values.get("domain")), values.get("website")])
            if not name:
                raise ValueProblem("a Pipedrive organization needs a name")
            out["name"] = str(name)
        if self.entity == "deals" and not out.get("title"):
            raise ValueProblem("a Pipedrive deal needs a title")


def _first(values: Iterable[Any]) -> str | None:
    for v in values:
        if v not in (None, ""):
            return str(v)
    return None
