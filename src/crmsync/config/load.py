"""Loading and validating the configuration file.

msgspec stops at the first error it meets; an operator fixing a config wants all of them at
once. So the TOML is first parsed to plain data and walked against the Structs' type
information, collecting every structural problem with its `$.path`; only a structurally valid
document is converted, and then checked for what types cannot say (duplicate names, unknown
connections, missing secrets, fields mapped twice...).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec
from msgspec import inspect as mi

from crmsync.config.addresses import listen_problem, url_problem
from crmsync.config.defaults import ASSOCIABLE, associable, effective_mappings
from crmsync.config.host import host_problems
from crmsync.config.model import (
    Config,
    Connection,
    OAuthAuth,
    ObjectSync,
    PipedriveApiToken,
    PipedriveConnection,
    PostgresConnection,
)
from crmsync.config.problems import ConfigError, Problem
from crmsync.config.secrets import SecretError, read_secret

__all__ = ["ConfigError", "Problem", "load_config", "parse_config"]


def _type_name(t: mi.Type) -> str:
    match t:
        case mi.StrType():
            return "string"
        case mi.IntType():
            return "integer"
        case mi.FloatType():
            return "number"
        case mi.BoolType():
            return "boolean"
        case mi.ListType():
            return "array"
        case mi.DictType() | mi.StructType():
            return "table"
        case mi.NoneType():
            return "nothing"
        case mi.LiteralType(values=values):
            return "one of " + ", ".join(repr(v) for v in values)
        case mi.UnionType(types=types):
            return " or ".join(_type_name(x) for x in types if not isinstance(x, mi.NoneType))
    return type(t).__name__


def _value_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "table"
    return type(value).__name__


_BAD = object()  # a value that failed validation; the cleaned document drops it


_MSGSPEC_TYPES = {"str": "string", "int": "integer", "float": "number", "bool": "boolean",
                  "array": "array", "object": "table", "null": "nothing"}
_TYPE_ERR = re.compile(r"^Expected `([^`]+)`, got `([^`]+)`$")
_RANGE_ERR = re.compile(r"^Expected `([^`]+)` (.+)$")


def _plain(text: str, t: mi.Type, value: Any, inside: bool) -> str:
    """msgspec's message in plain words: a wrong type, or a value out of its range."""
    m = _TYPE_ERR.match(text)
    if m:
        if inside:  # an element of the value: msgspec names both types
            exp = " or ".join(_MSGSPEC_TYPES.get(x.strip(), x.strip())
                              for x in m.group(1).split("|"))
            return f"wrong type: expected {exp}, got {_MSGSPEC_TYPES.get(m.group(2), m.group(2))}"
        return f"wrong type: expected {_type_name(t)}, got {_value_kind(value)}"
    m = _RANGE_ERR.match(text)
    if m:
        rule = m.group(2)
        if rule.startswith("of length >= 1"):
            return "must not be empty"
        rule = rule.replace("of length", "length")
        return f"out of range: must be {rule} (got {value!r})"
    return text


def _leaf(value: Any, t: mi.Type, py_type: Any, path: str, out: list[Problem]) -> Any:
    if isinstance(t, mi.LiteralType):
        if value not in t.values:
            allowed = ", ".join(repr(v) for v in sorted(t.values, key=str))
            out.append(Problem(path, f"unknown value {value!r}; expected one of {allowed}"))
            return _BAD
        return value
    try:
        msgspec.convert(value, py_type, strict=True)
    except msgspec.ValidationError as exc:
        text = str(exc)
        where = ""
        if " - at `$" in text:
            text, where = text.split(" - at `$", 1)
            where = where.rstrip("`")
        out.append(Problem(path + where, _plain(text, t, value, bool(where))))
        return _BAD
    return value


def _placeholder(t: mi.Type) -> Any:
    """A well-typed stand-in for a required value that was invalid, so that the rest of the
    document can still be checked; problems reported under its path are then dropped."""
    match t:
        case mi.LiteralType(values=values):
            return sorted(values, key=str)[0]
        case mi.StrType():
            return "_invalid_"
        case mi.IntType() | mi.FloatType():
            return 1
        case mi.BoolType():
            return False
        case mi.ListType():
            return []
        case mi.DictType():
            return {}
        case mi.StructType():
            return _clean_struct({}, t, "", [])
        case mi.UnionType(types=types):
            return _placeholder(types[0])
    return None


def _walk(value: Any, t: mi.Type, py_type: Any, path: str, out: list[Problem]) -> Any:
    if isinstance(t, mi.UnionType):
        non_none = [x for x in t.types if not isinstance(x, mi.NoneType)]
        if value is None and len(non_none) < len(t.types):
            return value
        structs = [x for x in non_none if isinstance(x, mi.StructType)]
        if structs and isinstance(value, dict):
            tagged = [s for s in structs if s.tag_field]
            if tagged:
                field = tagged[0].tag_field
                tag = value.get(field)
                chosen = next((s for s in tagged if s.tag == tag), None)
                if chosen is None:
                    allowed = ", ".join(repr(s.tag) for s in tagged)
                    what = "missing" if tag is None else f"unknown value {tag!r}"
                    out.append(Problem(f"{path}.{field}", f"{what}; expected one of {allowed}",
                                       replaced=True))
                    return _BAD
                return _clean_struct(value, chosen, path, out)
            if len(structs) == 1:
                return _clean_struct(value, structs[0], path, out)
        return _leaf(value, t, py_type, path, out)
    if isinstance(t, mi.StructType):
        if not isinstance(value, dict):
            out.append(Problem(path, f"wrong type: expected table, got {_value_kind(value)}"))
            return _BAD
        return _clean_struct(value, t, path, out)
    if isinstance(t, mi.DictType) and isinstance(value, dict):
        val_py = getattr(py_type, "__args__", (Any, Any))[1]
        cleaned_d = {}
        for k, v in value.items():
            item = _walk(v, t.value_type, val_py, f"{path}.{k}", out)
            if item is not _BAD:
                cleaned_d[k] = item
        return cleaned_d if len(cleaned_d) == len(value) else _BAD
    if isinstance(t, mi.ListType) and isinstance(value, list) and not isinstance(
            t.item_type, mi.StructType | mi.UnionType):
        item_py = getattr(py_type, "__args__", (Any,))[0]
        items_l = [_walk(v, t.item_type, item_py, f"{path}[{i}]", out)
                   for i, v in enumerate(value)]
        return _BAD if any(x is _BAD for x in items_l) else items_l
    if isinstance(t, mi.ListType) and isinstance(t.item_type, mi.StructType | mi.UnionType):
        if not isinstance(value, list):
            out.append(Problem(path, f"wrong type: expected array, got {_value_kind(value)}"))
            return _BAD
        item_py = getattr(py_type, "__args__", (Any,))[0]
        items = [_walk(item, t.item_type, item_py, f"{path}[{i}]", out)
                 for i, item in enumerate(value)]
        # Keep list positions so that later paths still name the right element.
        return [_placeholder(t.item_type) if item is _BAD else item for item in items]
    return _leaf(value, t, py_type, path, out)


def _clean_struct(value: dict[str, Any], t: mi.StructType, path: str,
                  out: list[Problem]) -> dict[str, Any]:
    fields = {f.encode_name: f for f in t.fields}
    cleaned: dict[str, Any] = {}
    if t.tag_field:
        got = value.get(t.tag_field)
        if got != t.tag and path:
            what = "missing" if got is None else f"unknown value {got!r}"
            out.append(Problem(f"{path}.{t.tag_field}", f"{what}; expected {t.tag!r}"))
        cleaned[t.tag_field] = t.tag
    hints = {f.encode_name: f.type for f in msgspec.structs.fields(t.cls)}
    for key in value:
        if key not in fields and key != t.tag_field:
            out.append(Problem(f"{path}.{key}", "unknown key"))
    for name, f in fields.items():
        if name not in value:
            if f.required:
                if path:
                    out.append(Problem(f"{path}.{name}", "missing required key", replaced=True))
                cleaned[name] = _placeholder(f.type)
            continue
        mark = len(out)
        v = _walk(value[name], f.type, hints[name], f"{path}.{name}", out)
        if v is _BAD:
            if f.required:
                cleaned[name] = _placeholder(f.type)
                out[mark:] = [dataclasses.replace(p, replaced=True) for p in out[mark:]]
        else:
            cleaned[name] = v
    return cleaned


def structural_problems(data: dict[str, Any]) -> tuple[list[Problem], dict[str, Any]]:
    """Every structural problem of the document, and a cleaned copy of it in which each
    invalid value is dropped (or replaced by a placeholder where it is required)."""
    out: list[Problem] = []
    cleaned = _clean_struct(data, mi.type_info(Config), "$", out)  # type: ignore[arg-type]
    return out, cleaned


def _check_secret(obj: Any, env_attr: str, file_attr: str, path: str, required: bool,
                  out: list[Problem], base_dir: Path | None) -> None:
    env, file = getattr(obj, env_attr), getattr(obj, file_attr)
    if not env and not file:
        if required:
            out.append(Problem(f"{path}.{env_attr}", f"missing secret: set {env_attr} or {file_attr}"))
        return
    where = f"{path}.{env_attr if env else file_attr}"
    if env and file:
        out.append(Problem(where, f"give {env_attr} or {file_attr}, not both"))
        return
    try:
        secret = read_secret(env, file, base_dir)
    except SecretError as exc:
        out.append(Problem(where, str(exc)))
        return
    if secret.warning:
        out.append(Problem(where, secret.warning, "warning"))


# Pipedrive's objects and the hub object each one syncs with, and the associations it keeps
# (a record's foreign key: person.org_id, deal.person_id, deal.org_id).
PIPEDRIVE_OBJECTS = {"persons": "contacts", "organizations": "companies", "deals": "deals"}
PIPEDRIVE_ASSOCIATIONS = (("persons", "organizations"), ("deals", "persons"),
                          ("deals", "organizations"))


def _check_sync(cfg: Config, i: int, sync: ObjectSync, conns: dict[str, Connection],
                out: list[Problem]) -> None:
    path = f"$.syncs[{i}]"
    conn = conns.get(sync.connection)
    if conn is None:
        known = ", ".join(sorted(conns)) or "none are configured"
        out.append(Problem(f"{path}.connection",
                           f"unknown connection {sync.connection!r} (known: {known})"))
    app_columns: list[str] | None = None
    table = None
    if isinstance(conn, PipedriveConnection):
        want = PIPEDRIVE_OBJECTS.get(sync.app_object)
        if want is None:
            out.append(Problem(f"{path}.app_object",
                               f"Pipedrive connection {conn.name!r} has no object "
                               f"{sync.app_object!r} (known: {', '.join(PIPEDRIVE_OBJECTS)})"))
        elif want != sync.hub_object:
            out.append(Problem(f"{path}.app_object",
                               f"Pipedrive {sync.app_object} sync with HubSpot {want}, "
                               f"not {sync.hub_object}"))
    elif conn is not None:
        table = next((t for t in conn.tables if t.object == sync.app_object), None)
        if table is None:
            out.append(Problem(f"{path}.app_object",
                               f"connection {conn.name!r} has no table for app object "
                               f"{sync.app_object!r}"))
        else:
            app_columns = list(table.columns) or None
    columns_path = ""
    if conn is not None and table is not None and app_columns \
            and not isinstance(conn, PipedriveConnection):
        ci = cfg.connections.index(conn)
        columns_path = f"$.connections[{ci}].tables[{conn.tables.index(table)}].columns"

    seen_hub: dict[str, int] = {}
    seen_app: dict[str, int] = {}
    for j, m in enumerate(sync.mappings):
        mpath = f"{path}.mappings[{j}]"
        if m.hub in seen_hub:
            out.append(Problem(f"{mpath}.hub", f"hub property {m.hub!r} is mapped twice "
                                               f"(also at mappings[{seen_hub[m.hub]}])"))
        seen_hub.setdefault(m.hub, j)
        if m.enabled:
            if m.app in seen_app:
                out.append(Problem(f"{mpath}.app", f"app field {m.app!r} is mapped twice "
                                                   f"(also at mappings[{seen_app[m.app]}])"))
            seen_app.setdefault(m.app, j)
        app_field = ((table.stage_column or m.app) if m.transform == "stage" and table
                     else m.app)
        if m.enabled and app_columns and app_field not in app_columns:
            # The connector reads only the listed columns: the mapping would be ignored.
            out.append(Problem(f"{mpath}.app",
                               f"column {app_field!r} is not one of the columns crmsync reads "
                               f"of app object {sync.app_object!r} ({columns_path}): add it "
                               "there or correct `app`"))
        if m.required and not m.enabled:
            out.append(Problem(f"{mpath}.enabled",
                               f"mapping {m.hub!r} is required but switched off"))
        if m.direction != "both" and sync.direction != "both" and m.direction != sync.direction:
            out.append(Problem(f"{mpath}.direction",
                               f"field direction {m.direction!r} contradicts the object sync's "
                               f"direction {sync.direction!r}: nothing could ever move"))
        if m.transform == "stage" and sync.hub_object != "deals":
            out.append(Problem(f"{mpath}.transform", "the stage transform is only for deals"))
        if m.transform == "enum" and not m.options:
            out.append(Problem(f"{mpath}.options", "an enum mapping needs its option map"))
        if m.transform == "multiselect" and not m.separator:
            out.append(Problem(f"{mpath}.separator", "a multiselect mapping needs a separator"))
        if m.owner_object and m.transform != "owner":
            out.append(Problem(f"{mpath}.owner_object", "only an owner mapping (transform = "
                                                        "\"owner\") goes through an owners table"))
        if m.transform == "owner" and m.owner_object and conn is not None and not any(
                t.object == m.owner_object for t in getattr(conn, "tables", ())):
            out.append(Problem(f"{mpath}.owner_object",
                               f"connection {conn.name!r} has no table for app object "
                               f"{m.owner_object!r} (add it to connections[].tables)"
                               if hasattr(conn, "tables") else
                               f"connection {conn.name!r} has no tables: owners of a "
                               f"{conn.connector_type} app are paired by the email the mapped "
                               "field holds; remove owner_object"))
        if m.hub == "hubspot_owner_id" and m.transform != "owner" and m.enabled:
            out.append(Problem(f"{mpath}.transform",
                               "hubspot_owner_id holds HubSpot owner ids: map it with transform "
                               "= \"owner\" (paired by the owner's email)", "warning"))

    connector_type = "sqlite" if conn is None else conn.connector_type
    effective = effective_mappings(connector_type, sync.hub_object, sync.mappings,
                                   sync.use_default_mappings, app_columns)
    enabled = [m for m in effective if m.enabled]
    app_fields = {m.app for m in enabled}
    hub_props = {m.hub for m in enabled}
    if sync.use_default_mappings:
        configured_app = {m.app: m.hub for m in sync.mappings if m.enabled}
        configured_hub = {m.hub for m in sync.mappings}
        for m in effective:
            if m.hub in configured_hub:
                continue  # a configured mapping, not a default
            if m.enabled and m.app in configured_app and configured_app[m.app] != m.hub:
                out.append(Problem(f"{path}.mappings",
                                   f"app field {m.app!r} is mapped twice: by default to "
                                   f"{m.hub!r} and in the config to {configured_app[m.app]!r}"))
    if not enabled:
        out.append(Problem(f"{path}.mappings", "no enabled field mapping"))

    for j, f in enumerate(sync.filters):
        fpath = f"{path}.filters[{j}]"
        mapped = hub_props if f.side == "hub" else app_fields
        if f.property not in mapped:
            out.append(Problem(f"{fpath}.property",
                               f"filter on {f.side} property {f.property!r}, which is not mapped"))
        if f.operator in ("IN", "NOT_IN") and not f.values:
            out.append(Problem(f"{fpath}.values", f"{f.operator} needs `values`"))
        elif (f.operator not in ("IN", "NOT_IN", "HAS_PROPERTY", "NOT_HAS_PROPERTY")
              and f.value is None):
            out.append(Problem(f"{fpath}.value", f"{f.operator} needs `value`"))

    # The match key must travel with every record created on a side the sync writes to: a
    # crash between a create and the commit of its link is healed by matching on it.
    key_props = {"contacts": ["email"], "companies": ["name", "domain"]}.get(
        sync.hub_object, [sync.unique_property] if sync.unique_property else [])
    if key_props:
        by_hub = {m.hub: m for m in enabled}
        for target, flows in (("hub", ("both", "to_hub")), ("app", ("both", "to_app"))):
            if sync.direction not in flows:
                continue
            if not any(p in by_hub and by_hub[p].direction in flows for p in key_props):
                names = " or ".join(repr(p) for p in key_props)
                out.append(Problem(f"{path}.mappings",
                                   f"the match key ({names}) must be mapped towards the {target}, "
                                   f"where this sync creates records"))
    if sync.hub_object not in ("contacts", "companies") and not sync.unique_property:
        out.append(Problem(f"{path}.unique_property",
                           f"{sync.hub_object} have no built-in match key: set unique_property "
                           "to a mapped hub property with unique values"))
    if sync.unique_property and sync.unique_property not in hub_props:
        out.append(Problem(f"{path}.unique_property",
                           f"unique_property {sync.unique_property!r} is not a mapped hub property"))
    _check_associations(cfg, path, sync, conn, out)
    if sync.sync_contacts_without_email and sync.hub_object != "contacts":
        out.append(Problem(f"{path}.sync_contacts_without_email", "only applies to contacts",
                           "warning"))
    if (sync.stage_map or sync.auto_map_stages) and sync.hub_object != "deals":
        out.append(Problem(f"{path}.stage_map", "stage maps only apply to deals"))
    if sync.event_sync and sync.hub_object != "contacts":
        out.append(Problem(f"{path}.event_sync", "event sync is only for contacts"))
    if sync.hub_object == "deals" and not sync.stage_map and not sync.auto_map_stages:
        out.append(Problem(f"{path}.stage_map",
                           "deals sync only in mapped stages: give stage_map entries or set "
                           "auto_map_stages"))
    seen_stage: dict[tuple[str, str], int] = {}
    for j, e in enumerate(sync.stage_map):
        key = (e.hub_pipeline, e.hub_stage)
        if key in seen_stage:
            out.append(Problem(f"{path}.stage_map[{j}]",
                               f"hub stage {e.hub_pipeline}/{e.hub_stage} is mapped twice"))
        seen_stage.setdefault(key, j)
    if sync.on_delete == "propagate" and sync.direction != "both":
        out.append(Problem(f"{path}.on_delete",
                           "deletes propagate only where the direction allows writing",
                           "warning"))


def _check_associations(cfg: Config, path: str, sync: ObjectSync,
                        conn: Connection | None, out: list[Problem]) -> None:
    """Associations are kept with another object sync of the same connection, for a pair of
    objects HubSpot's data sync keeps, where the app stores that association
    (runtime/associations.py): anything else would be accepted and silently ignored."""
    for k, obj in enumerate(sync.associations):
        apath = f"{path}.associations[{k}]"
        if obj == sync.hub_object:
            out.append(Problem(apath, f"{obj} cannot be associated with themselves here: "
                                      f"remove {obj!r}"))
            continue
        if not associable(sync.hub_object, obj):
            limited = sync.hub_object if sync.hub_object in ASSOCIABLE else obj
            kept = " and ".join(sorted(ASSOCIABLE[limited]))
            out.append(Problem(apath, f"{limited} are kept associated only with {kept} (as "
                                      f"HubSpot's data sync does): remove {obj!r}"))
            continue
        partner = next((s for s in cfg.syncs
                        if s.connection == sync.connection and s.hub_object == obj), None)
        if partner is None:
            out.append(Problem(apath, f"connection {sync.connection!r} has no object sync of "
                                      f"{obj}: add one, or remove {obj!r}"))
            continue
        if not partner.enabled:
            out.append(Problem(apath, f"the object sync of {obj} is switched off: these "
                                      "associations are not kept while it is", "warning"))
        if conn is None:
            continue
        pair = {sync.app_object, partner.app_object}
        if isinstance(conn, PipedriveConnection):
            if not any(set(keys) == pair for keys in PIPEDRIVE_ASSOCIATIONS):
                out.append(Problem(apath, f"Pipedrive keeps no association between "
                                          f"{sync.app_object} and {partner.app_object} (it "
                                          "keeps person.org_id, deal.person_id, deal.org_id): "
                                          f"remove {obj!r}"))
            continue
        if not any({a.from_object, a.to_object} == pair for a in conn.associations):
            ci = cfg.connections.index(conn)
            out.append(Problem(apath, f"connection {conn.name!r} stores no association between "
                                      f"app objects {sync.app_object!r} and "
                                      f"{partner.app_object!r}: add one to "
                                      f"$.connections[{ci}].associations (a foreign-key column "
                                      f"or a join table), or remove {obj!r}"))


def _check_pipedrive(cfg: Config, conn: PipedriveConnection, cpath: str, check_host: bool,
                     out: list[Problem], base_dir: Path | None) -> None:
    if (msg := url_problem(conn.base_url)) is not None:
        out.append(Problem(f"{cpath}.base_url", msg))
    auth = conn.auth
    apath = f"{cpath}.auth"
    if check_host:
        if isinstance(auth, PipedriveApiToken):
            _check_secret(auth, "token_env", "token_file", apath, True, out, base_dir)
        else:
            _check_secret(auth, "client_secret_env", "client_secret_file", apath, True, out,
                          base_dir)
            _check_secret(auth, "refresh_token_env", "refresh_token_file", apath, True, out,
                          base_dir)
    if not isinstance(auth, PipedriveApiToken) and (
            msg := url_problem(auth.token_url)) is not None:
        out.append(Problem(f"{apath}.token_url", msg))
    wh = conn.webhooks
    if wh is None:
        return
    wpath = f"{cpath}.webhooks"
    if check_host:
        # Pipedrive signs nothing: without a password anyone could post events.
        _check_secret(wh, "password_env", "password_file", wpath, True, out, base_dir)
    if wh.url and (msg := url_problem(wh.url)) is not None:
        out.append(Problem(f"{wpath}.url", msg))
    daemon_wh = cfg.daemon.webhooks
    if not daemon_wh.enabled:
        out.append(Problem(wpath, "Pipedrive webhooks need the webhook server "
                                  "([daemon.webhooks] enabled = true)"))
    elif not wh.url and not daemon_wh.public_base_url:
        out.append(Problem(f"{wpath}.url", "give the URL Pipedrive calls, or set "
                                           "daemon.webhooks.public_base_url"))


def _check_changes(cfg: Config, check_host: bool, base_dir: Path | None,
                   out: list[Problem]) -> None:
    """`hub.changes`: what each intake mode needs, and settings another mode would ignore."""
    hub = cfg.hub
    has_webhook_secret = bool(hub.webhook_client_secret_env or hub.webhook_client_secret_file)
    if hub.changes == "journal":
        if hub.journal is None:
            out.append(Problem("$.hub.journal", 'changes = "journal" needs [hub.journal] with '
                               "the app's client_id and client_secret_env or client_secret_file"))
        elif check_host:
            _check_secret(hub.journal, "client_secret_env", "client_secret_file",
                          "$.hub.journal", True, out, base_dir)
        elif not hub.journal.client_secret_env and not hub.journal.client_secret_file:
            out.append(Problem("$.hub.journal.client_secret_env",
                               "missing secret: set client_secret_env or client_secret_file"))
        if hub.journal is not None and not hub.journal.scopes:
            out.append(Problem("$.hub.journal.scopes", "must not be empty (leave it out for the "
                               "journal's scopes)"))
    elif hub.journal is not None:
        out.append(Problem("$.hub.journal", f'ignored: hub.changes is "{hub.changes}", not '
                           '"journal"', "warning"))
    if hub.changes != "webhooks" and has_webhook_secret:
        out.append(Problem("$.hub.changes", f'HubSpot webhooks are refused with changes = '
                           f'"{hub.changes}": hub.webhook_client_secret_* is ignored', "warning"))


def oauth_problems(auth: OAuthAuth) -> list[Problem]:
    """What is wrong with an OAuth app's redirect and authorize URLs (hubspot-onboarding.md §1:
    https, or http on the host `localhost`; never an IP address)."""
    out: list[Problem] = []
    try:
        redirect = urlsplit(auth.redirect_uri)
        port = redirect.port
    except ValueError:
        return [Problem("$.hub.auth.redirect_uri", "not a valid URL")]
    host = redirect.hostname or ""
    if redirect.scheme not in ("http", "https") or not host:
        out.append(Problem("$.hub.auth.redirect_uri", "must be an http:// or https:// URL"))
    elif _is_ip(host):
        out.append(Problem("$.hub.auth.redirect_uri",
                           f"HubSpot does not accept an IP address ({host}) in a redirect URL: "
                           f"use http://localhost:{port or 8976}{redirect.path or '/'}"))
    elif redirect.scheme == "http" and host != "localhost":
        out.append(Problem("$.hub.auth.redirect_uri",
                           "HubSpot accepts http:// redirect URLs only on the host localhost; "
                           "use https:// or http://localhost:PORT/…"))
    if redirect.fragment:
        out.append(Problem("$.hub.auth.redirect_uri", "a redirect URL has no #fragment"))
    if not auth.authorize_url.startswith(("http://", "https://")):
        out.append(Problem("$.hub.auth.authorize_url", "must start with http:// or https://"))
    return out


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def semantic_problems(cfg: Config, check_host: bool = True,
                      base_dir: Path | None = None) -> list[Problem]:
    """What the types cannot say; with `check_host`, also what this machine must provide:
    readable secrets, the control group, a control socket path that fits, app databases."""
    out: list[Problem] = []
    hub = cfg.hub
    if hub.tier == "custom" and hub.limits is None:
        out.append(Problem("$.hub.limits", "tier 'custom' needs [hub.limits]"))
    if (msg := url_problem(hub.base_url)) is not None:
        out.append(Problem("$.hub.base_url", msg))
    ctl = cfg.daemon.control
    if ctl.mode not in (0o600, 0o660):
        out.append(Problem("$.daemon.control.mode", f"must be 0o600 or 0o660, not {ctl.mode:#o}"))
    if ctl.mode == 0o660 and not ctl.group:
        out.append(Problem("$.daemon.control.group", "mode 0o660 needs the admin group"))
    wh = cfg.daemon.webhooks
    if wh.enabled and (msg := listen_problem(wh.listen)) is not None:
        out.append(Problem("$.daemon.webhooks.listen", msg))
    if wh.public_base_url and (msg := url_problem(wh.public_base_url)) is not None:
        out.append(Problem("$.daemon.webhooks.public_base_url", msg))
    notify_url = cfg.daemon.notify.webhook_url
    if notify_url and (msg := url_problem(notify_url)) is not None:
        out.append(Problem("$.daemon.notify.webhook_url", msg))

    auth = hub.auth
    if isinstance(auth, OAuthAuth):
        out.extend(oauth_problems(auth))
    if check_host:
        out.extend(host_problems(cfg))
        if not isinstance(auth, OAuthAuth):
            _check_secret(auth, "token_env", "token_file", "$.hub.auth", True, out, base_dir)
        else:
            _check_secret(auth, "client_secret_env", "client_secret_file", "$.hub.auth", True, out, base_dir)
            mark = len(out)
            _check_secret(auth, "refresh_token_env", "refresh_token_file", "$.hub.auth", True, out, base_dir)
            out[mark:] = [p if p.severity != "error" else dataclasses.replace(
                p, message=f"{p.message}: run `crmsync connect hubspot` to install the app "
                           "and store its refresh token") for p in out[mark:]]
        _check_secret(hub, "webhook_client_secret_env", "webhook_client_secret_file", "$.hub",
                      False, out, base_dir)
    _check_changes(cfg, check_host, base_dir, out)

    conns: dict[str, Connection] = {}
    for i, conn in enumerate(cfg.connections):
        cpath = f"$.connections[{i}]"
        if conn.name in conns:
            out.append(Problem(f"{cpath}.name", f"duplicate connection name {conn.name!r}"))
        conns.setdefault(conn.name, conn)
        if isinstance(conn, PipedriveConnection):
            _check_pipedrive(cfg, conn, cpath, check_host, out, base_dir)
            continue
        if check_host:
            _check_secret(conn, "webhook_secret_env", "webhook_secret_file", cpath, False, out, base_dir)
        if isinstance(conn, PostgresConnection):
            # The connection string may hold a password: it lives in a file or the
            # environment, never in this file. Checked even without check_host: without
            # it the connection cannot be found at all.
            if check_host:
                _check_secret(conn, "dsn_env", "dsn_file", cpath, True, out, base_dir)
            elif not conn.dsn_env and not conn.dsn_file:
                out.append(Problem(f"{cpath}.dsn_env", "missing connection string: set dsn_env "
                                   "or dsn_file"))
            if conn.changelog_schema == conn.schema:
                out.append(Problem(f"{cpath}.changelog_schema",
                                   f"must differ from `schema` ({conn.schema!r}): uninstalling "
                                   "crmsync drops its schema with everything in it"))
        objects: set[str] = set()
        for j, t in enumerate(conn.tables):
            if t.object in objects:
                out.append(Problem(f"{cpath}.tables[{j}].object",
                                   f"app object {t.object!r} is defined twice"))
            objects.add(t.object)
        for j, a in enumerate(conn.associations):
            apath = f"{cpath}.associations[{j}]"
            if bool(a.column) == bool(a.join_table):
                out.append(Problem(apath, "give either `column` or `join_table`"))
            if a.join_table and not (a.from_column and a.to_column):
                out.append(Problem(apath, "a join table needs from_column and to_column"))

    seen_syncs: dict[tuple[str, str], int] = {}
    seen_app: dict[tuple[str, str], int] = {}
    for i, sync in enumerate(cfg.syncs):
        key = (sync.connection, sync.hub_object)
        if key in seen_syncs:
            out.append(Problem(f"$.syncs[{i}].hub_object",
                               f"{sync.hub_object} of connection {sync.connection!r} is already "
                               f"synced by syncs[{seen_syncs[key]}]"))
        seen_syncs.setdefault(key, i)
        app_key = (sync.connection, sync.app_object)
        if (isinstance(conns.get(sync.connection), PostgresConnection) and sync.enabled
                and app_key in seen_app):
            # Its change-log entries are acknowledged (deleted) by the object sync that
            # read them: a second reader would never see them.
            out.append(Problem(f"$.syncs[{i}].app_object",
                               f"app object {sync.app_object!r} of PostgreSQL connection "
                               f"{sync.connection!r} is already synced by "
                               f"syncs[{seen_app[app_key]}]; one object sync per table"))
        if sync.enabled:
            seen_app.setdefault(app_key, i)
        _check_sync(cfg, i, sync, conns, out)
    return out


def _parent(path: str) -> str:
    cut = max(path.rfind("."), path.rfind("["))
    return path[:cut] if cut > 1 else path


def _follows_from(p: Problem, structural: list[Problem]) -> bool:
    """A semantic problem caused by a value the structural pass already rejected (its
    placeholder): under the rejected value, beside it in the same table, or naming it."""
    if "_invalid_" in p.message:
        return True
    for s in structural:
        if p.path == s.path or p.path.startswith((s.path + ".", s.path + "[")):
            return True
        if p.path != "$" and s.path.startswith((p.path + ".", p.path + "[")):
            return True  # the table holding the rejected element was dropped
        scope = _parent(s.path)
        if s.replaced and scope != "$" and (p.path == scope
                                            or p.path.startswith((scope + ".", scope + "["))):
            return True
    return False


def parse_config(text: str, check_host: bool = True,
                 base_dir: Path | None = None) -> tuple[Config, list[Problem]]:
    """Parse and validate a configuration document; with `check_host`, also against this
    machine (secrets, control group and socket path, app databases: see semantic_problems).

    Returns the Config and its warnings; raises ConfigError with every error found. Reads
    secret files (bounded, regular files only): blocking I/O, run it off the event loop.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([Problem("$", f"not valid TOML: {exc}")]) from None
    except RecursionError:
        # tomllib parses nested arrays and inline tables recursively: a few hundred levels
        # exhaust Python's stack.
        raise ConfigError([Problem("$", "not valid TOML: arrays or inline tables are nested "
                                        "too deeply")]) from None
    structural, cleaned = structural_problems(data)
    try:
        cfg = msgspec.convert(cleaned, Config, strict=True)
    except msgspec.ValidationError:
        # Only reachable when a placeholder itself is invalid; the structural
        # problems already say what to fix.
        raise ConfigError(structural) from None
    semantic = semantic_problems(cfg, check_host=check_host, base_dir=base_dir)
    if structural:
        semantic = [p for p in semantic if not _follows_from(p, structural)]
    problems = structural + semantic
    if any(p.severity == "error" for p in problems):
        raise ConfigError(problems)
    return cfg, problems


def load_config(path: str | Path, check_host: bool = True) -> tuple[Config, list[Problem]]:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([Problem("$", f"config file {p} does not exist")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem("$", f"config file {p} cannot be read: {exc}")]) from None
    return parse_config(text, check_host=check_host, base_dir=p.parent.resolve())
