"""`crmsync app uninstall CONN`: a preview first, then everything crmsync installed in the
app database goes (SQLite: its triggers and change-log table; PostgreSQL: triggers, functions,
change log and schema)."""

from __future__ import annotations

import sqlite3

from crmsync.cli import main as cli_main
from crmsync.config import load_config
from crmsync.connectors.registry import open_app_connector

HUB = """
[hub.auth]
kind = "private_app"
token_env = "CRMSYNC_TEST_TOKEN"

[[connections]]
name = "shop"
{app}

[[connections.tables]]
object = "customers"
table = "customers"
"""


def run(*argv: str, capsys) -> tuple[int, str, str]:
    code = cli_main.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


async def _install(cfg) -> None:
    config, _ = load_config(cfg)
    (conn,) = config.connections
    async with open_app_connector(conn, cfg.parent):
        pass


async def test_sqlite_uninstall_previews_then_removes(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CRMSYNC_TEST_TOKEN", "pat-x")
    db = tmp_path / "app.db"
    with sqlite3.connect(db) as c:
        c.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, email TEXT, updated_at TEXT)")
    cfg = tmp_path / "crmsync.toml"
    cfg.write_text(HUB.format(app=f'type = "sqlite"\ndatabase = "{db}"'))
    await _install(cfg)
    code, out, _ = run("app", "uninstall", "shop", "--config", str(cfg), capsys=capsys)
    assert code == 0
    assert out.count("  trigger crmsync_changelog:object:customers:") == 3
    assert "  table crmsync_changelog (0 entries)" in out and "--yes" in out
    with sqlite3.connect(db) as c:  # a preview changes nothing
        assert c.execute("SELECT count(*) FROM sqlite_master WHERE type = 'trigger'"
                         ).fetchone() == (3,)
    code, out, _ = run("app", "uninstall", "shop", "--config", str(cfg), "--yes", capsys=capsys)
    assert code == 0 and out.startswith("removed from shop")
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT name FROM sqlite_master WHERE type IN ('trigger', 'table') "
                         "AND name NOT LIKE 'sqlite_%'").fetchall() == [("customers",)]
        assert c.execute("SELECT count(*) FROM sqlite_sequence").fetchone() == (0,)


async def test_postgres_uninstall_previews_then_removes(tmp_path, monkeypatch, capsys, pg_db):
    monkeypatch.setenv("CRMSYNC_TEST_TOKEN", "pat-x")
    pg_db.execute("CREATE TABLE customers (id bigserial PRIMARY KEY, email text, "
                  "updated_at timestamptz DEFAULT now())")
    (tmp_path / "dsn").write_text(pg_db.dsn)
    cfg = tmp_path / "crmsync.toml"
    cfg.write_text(HUB.format(app='type = "postgres"\ndsn_file = "dsn"'))
    await _install(cfg)
    code, out, _ = run("app", "uninstall", "shop", "--config", str(cfg), capsys=capsys)
    assert code == 0, out
    assert out.count("  trigger crmsync_") == 2
    assert "  function crmsync.capture_" in out
    assert "  table crmsync.changelog (0 unread entries)" in out
    assert "  schema crmsync" in out
    assert pg_db.execute("SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal") == [(2,)]
    code, out, _ = run("app", "uninstall", "shop", "--config", str(cfg), "--yes", capsys=capsys)
    assert code == 0
    assert pg_db.execute("SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal") == [(0,)]
    assert pg_db.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 'crmsync'") == [(0,)]


def test_an_unknown_connection_is_named(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CRMSYNC_TEST_TOKEN", "pat-x")
    cfg = tmp_path / "crmsync.toml"
    cfg.write_text(HUB.format(app=f'type = "sqlite"\ndatabase = "{tmp_path / "x.db"}"'))
    code, _, err = run("app", "uninstall", "pg-main", "--config", str(cfg), capsys=capsys)
    assert code == 2 and "no connection 'pg-main'" in err and "known: shop" in err
