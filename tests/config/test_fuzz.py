"""The loader never crashes: whatever the document, it returns a Config or raises ConfigError.

Three generators: random nested values under the known top-level keys (keys drawn mostly from
the schema's own field names, so the walk goes deep); the example config with random parts
replaced, removed or added (so the semantic checks see almost-valid documents); and malformed
TOML (random text, and the example's text cut and spliced).

`derandomize=True` makes every run see the same examples, so a failure here is reproducible.
"""

from __future__ import annotations

import datetime as dt
import math
import tomllib
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from msgspec import inspect as mi

from crmsync.config import Config, ConfigError, parse_config

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "crmsync.example.toml"
EXAMPLE_TEXT = EXAMPLE.read_text()
EXAMPLE_DATA = tomllib.loads(EXAMPLE_TEXT)

# A fixed number of examples whatever the profile (the CI profile's 500 is for the engine's
# property tests; here it would cost ~20 s), no "explain" phase (it re-runs a failure many
# times). The autouse environment fixture is function-scoped; it only needs to run once.
fuzz = settings(derandomize=True, deadline=None, max_examples=150,
                phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _schema_words() -> tuple[list[str], list[str]]:
    """Every key and every enum value the schema knows."""
    keys: set[str] = set()
    values: set[str] = set()

    def walk(t: mi.Type) -> None:
        match t:
            case mi.StructType():
                if t.tag_field:
                    keys.add(t.tag_field)
                    values.add(str(t.tag))
                for f in t.fields:
                    keys.add(f.encode_name)
                    walk(f.type)
            case mi.ListType(item_type=item) | mi.DictType(value_type=item):
                walk(item)
            case mi.UnionType(types=types):
                for x in types:
                    walk(x)
            case mi.LiteralType(values=vals):
                values.update(str(v) for v in vals)

    walk(mi.type_info(Config))
    return sorted(keys), sorted(values)


KEYS, ENUM_VALUES = _schema_words()

# --- a TOML writer (inline tables only, so any nesting fits on one line) -------------------


def _string(s: str) -> str:
    out = ['"']
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return _string(v)
    if isinstance(v, dt.datetime | dt.date | dt.time):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_string(k)} = {_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(type(v))


def dumps(doc: dict[str, Any]) -> str:
    return "".join(f"{_string(k)} = {_value(v)}\n" for k, v in doc.items())


# --- strategies ----------------------------------------------------------------------------

keys = st.one_of(st.sampled_from(KEYS), st.sampled_from(KEYS), st.text(max_size=8))
scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([0, 1, -1, 0o600, 0o660, 0o644, 300, 2**31]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(ENUM_VALUES),
    st.sampled_from(["", "shop", "customers", "email", "hubspot-token",
                     "CRMSYNC_NOT_SET", "http://x", "127.0.0.1:8080"]),
    st.datetimes(timezones=st.none() | st.just(dt.UTC)),
    st.dates(),
    st.times(),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(keys, inner, max_size=5),
    ),
    max_leaves=25,
)
documents = st.dictionaries(
    st.sampled_from(["hub", "daemon", "connections", "syncs"]) | keys, values, max_size=5)


def _check(text: str, base_dir: Path) -> None:
    try:
        _cfg, warnings = parse_config(text, base_dir=base_dir)
    except ConfigError as exc:
        problems = exc.problems
        assert any(p.severity == "error" for p in problems)
    else:
        problems = warnings
    for p in problems:
        assert p.path.startswith("$"), p
        assert p.message, p


@fuzz
@given(documents)
def test_random_documents_never_crash_the_loader(doc):
    text = dumps(doc)
    tomllib.loads(text)  # the writer above produces valid TOML
    _check(text, EXAMPLE.parent)


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*path, i))
    return out


@st.composite
def mutated_examples(draw: st.DrawFn) -> dict[str, Any]:
    doc = tomllib.loads(EXAMPLE_TEXT)
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(_paths(doc)))
        if not path:
            continue
        parent = doc
        for step in path[:-1]:
            parent = parent[step]
        last = path[-1]
        action = draw(st.sampled_from(["replace", "replace", "remove", "add"]))
        if action == "replace":
            parent[last] = draw(values)
        elif action == "remove":
            del parent[last]
        elif isinstance(parent, dict):
            parent[draw(keys)] = draw(values)
        else:
            parent.insert(last, draw(values))
    return doc


@fuzz
@given(mutated_examples())
def test_mutated_example_never_crashes_the_loader(doc):
    _check(dumps(doc), EXAMPLE.parent)


@fuzz
@given(st.text(max_size=300))
def test_random_text_never_crashes_the_loader(text):
    _check(text, EXAMPLE.parent)


@fuzz
@given(st.data())
def test_spliced_example_text_never_crashes_the_loader(data):
    text = EXAMPLE_TEXT
    for _ in range(data.draw(st.integers(1, 3))):
        a = data.draw(st.integers(0, len(text)))
        b = data.draw(st.integers(a, min(len(text), a + 40)))
        action = data.draw(st.sampled_from(["cut", "duplicate", "insert"]))
        if action == "cut":
            text = text[:a] + text[b:]
        elif action == "duplicate":
            text = text[:b] + text[a:b] + text[b:]
        else:
            text = text[:a] + data.draw(st.text(max_size=10)) + text[a:]
    _check(text, EXAMPLE.parent)


SECRET_KEYS = {
    "private_app": ["token_env", "token_file"],
    "oauth": ["client_secret_env", "client_secret_file", "refresh_token_env",
              "refresh_token_file"],
}


@fuzz
@given(
    kind=st.sampled_from(sorted(SECRET_KEYS)),
    refs=st.dictionaries(
        st.sampled_from([k for ks in SECRET_KEYS.values() for k in ks]),
        st.one_of(st.text(max_size=12), st.sampled_from(["token", "dir", "/", "."])),
        max_size=3),
    content=st.binary(max_size=12),
)
def test_secret_references_never_crash_the_loader(tmp_path_factory, kind, refs, content):
    """The loader reads every secret the document names: whatever the names and whatever the
    files hold, the answer is a Config or a ConfigError."""
    base = tmp_path_factory.getbasetemp() / "secret-references"
    (base / "dir").mkdir(parents=True, exist_ok=True)
    (base / "token").write_bytes(content)
    auth = {"kind": kind, **({"client_id": "abc"} if kind == "oauth" else {})}
    auth |= {k: v for k, v in refs.items() if k in SECRET_KEYS[kind]}
    _check(dumps({"hub": {"auth": auth}}), base)
