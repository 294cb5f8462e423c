"""check-config's answers: the example passes with a summary; a broken file exits 2 and says why."""

from __future__ import annotations

import io
from pathlib import Path

from crmsync.cli import check_config
from crmsync.config import load_config

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "crmsync.example.toml"


def run(path: Path | str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = check_config.run(str(path), out, err)
    return code, out.getvalue(), err.getvalue()


def test_the_example_config_passes_with_a_summary(example_config, tmp_path):
    code, out, err = run(example_config)
    assert code == 0, err
    assert err == ""
    lines = out.splitlines()
    assert lines[0] == f"{example_config}: OK"
    assert "connections: 2, object syncs: 6" in lines
    # Each connection, and under it each object sync with its direction and conflict winner.
    shop = lines.index(f"  shop (sqlite: {tmp_path / 'shop.db'})")
    syncs = [ln.strip() for ln in lines[shop + 1:]]
    assert syncs[0].startswith("contacts ⇄ customers (both, winner hub"), syncs
    assert "preview" in syncs[0]
    assert syncs[1].startswith("companies ⇄ organisations (to_hub, winner app"), syncs
    assert syncs[2].startswith("deals ⇄ opportunities (both, winner hub"), syncs
    pd = lines.index("  pipedrive-eu (pipedrive: https://api.pipedrive.com)")
    assert [ln.strip().split(" (")[0] for ln in lines[pd + 1:]] == [
        "contacts ⇄ persons", "companies ⇄ organizations", "deals ⇄ deals"]


def test_the_example_mentions_every_option():
    """The example documents every key the schema knows (issue 2: "uses every option"); an
    alternative (`token_env` for `token_file`) may be mentioned in a comment."""
    import re
    import tomllib

    from msgspec import inspect as mi

    from crmsync.config import Config

    def keys(t: mi.Type, prefix: str, out: set[str]) -> None:
        match t:
            case mi.StructType():
                if t.tag_field:
                    out.add(f"{prefix}.{t.tag_field}")
                for f in t.fields:
                    out.add(f"{prefix}.{f.encode_name}")
                    keys(f.type, f"{prefix}.{f.encode_name}", out)
            case mi.ListType(item_type=item):
                keys(item, prefix, out)
            case mi.UnionType(types=types):
                for x in types:
                    keys(x, prefix, out)

    def used(value: object, prefix: str, out: set[str]) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                out.add(f"{prefix}.{k}")
                # Option maps are data, not schema keys.
                if not prefix.endswith(".options"):
                    used(v, f"{prefix}.{k}", out)
        elif isinstance(value, list):
            for v in value:
                used(v, prefix, out)

    known: set[str] = set()
    keys(mi.type_info(Config), "$", known)
    text = EXAMPLE.read_text()
    present: set[str] = set()
    used(tomllib.loads(text), "$", present)
    comments = "\n".join(ln.split("#", 1)[1] for ln in text.splitlines() if "#" in ln)
    missing = sorted(k for k in known - present
                     if not re.search(rf"\b{re.escape(k.rsplit('.', 1)[1])}\b", comments))
    assert missing == [], missing


def test_warnings_do_not_fail_the_check(example_config):
    config = example_config
    config.write_text(config.read_text().replace(
        'hub_object = "companies"', 'hub_object = "companies"\nsync_contacts_without_email = true',
        1))
    code, _out, err = run(config)
    assert code == 0, err
    assert "warning: $.syncs[1].sync_contacts_without_email: only applies to contacts" in err
    _, warnings = load_config(config)
    assert [w.path for w in warnings] == ["$.syncs[1].sync_contacts_without_email"]


def test_a_missing_file(tmp_path):
    code, out, err = run(tmp_path / "nope.toml")
    assert code == 2 and out == ""
    assert f"$: config file {tmp_path / 'nope.toml'} does not exist" in err


def test_a_file_that_is_not_toml(tmp_path):
    config = tmp_path / "crmsync.toml"
    config.write_text("[hub\nauth = 1\n")
    code, out, err = run(config)
    assert code == 2 and out == ""
    assert "$: not valid TOML" in err
    assert "line 1" in err


def test_a_file_that_is_not_text(tmp_path):
    config = tmp_path / "crmsync.toml"
    config.write_bytes(b"\xff\xfe[hub]\x00")
    code, _, err = run(config)
    assert code == 2
    assert "$: config file" in err and "cannot be read" in err


def test_the_error_header_counts_errors(tmp_path):
    config = tmp_path / "crmsync.toml"
    config.write_text('[hub]\ntier = "free"\n[hub.auth]\nkind = "private_app"\n')
    code, _, err = run(config)
    assert code == 2
    assert err.splitlines()[0] == f"{config}: 2 error(s)"
    assert "  error: $.hub.tier: unknown value 'free'" in err
    assert "  error: $.hub.auth.token_env: missing secret" in err
