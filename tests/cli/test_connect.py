"""`crmsync connect hubspot`: the OAuth authorization-code flow against the emulator's consent
page, as a person at a browser drives it (hubspot-onboarding.md §1)."""

from __future__ import annotations

import stat
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import trio

from .connect_env import (
    CLIENT_ID,
    CLIENT_SECRET,
    browse,
    callback_uri,
    connect_args,
    connecting,
    oauth_config,
    oauth_emulator,
)

DEALS_SYNC = """
[[connections]]
name = "shop"
type = "sqlite"
database = "{db}"

[[connections.tables]]
object = "customers"
table = "customers"

[[connections.tables]]
object = "opportunities"
table = "opportunities"

[[syncs]]
connection = "shop"
hub_object = "contacts"
app_object = "customers"
direction = "to_app"

[[syncs]]
connection = "shop"
hub_object = "deals"
app_object = "opportunities"
unique_property = "dealname"
auto_map_stages = true
"""


def _kept(emu, path: Path) -> str:
    token = path.read_text().strip()
    assert emu.auth.refresh_token_info(token) is not None, "not a refresh token HubSpot issued"
    return token


async def test_loopback_redirect_stores_the_refresh_token(tmp_path: Path):
    redirect = callback_uri()
    with trio.fail_after(60):
        async with oauth_emulator(redirect) as (emu, base):
            cfg = oauth_config(tmp_path, base, redirect,
                               syncs=DEALS_SYNC.format(db=tmp_path / "app.db"))
            async with connecting(cfg) as run:
                url = await run.authorize_url()
                query = parse_qs(urlsplit(url).query)
                # The authorize URL of hubspot-onboarding.md §1; the scopes come from the
                # object syncs (§3): contacts only read (to_app), deals read and written.
                assert query["client_id"] == [CLIENT_ID]
                assert query["redirect_uri"] == [redirect]
                assert query["scope"] == ["oauth crm.objects.contacts.read "
                                          "crm.objects.deals.read crm.objects.deals.write"]
                assert "%20" in url and "+" not in urlsplit(url).query
                consent = await browse(url)  # the emulator consents at once
                assert consent.status_code == 302
                landing = await browse(consent.headers["location"])
                assert landing.status_code == 200
                assert "go back to your terminal" in landing.text
                assert await run.finished() == 0, run.errors
    token_file = tmp_path / "state" / "hubspot-refresh-token"
    _kept(emu, token_file)
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert "connected to HubSpot account 62515" in run.text
    # Neither the client secret nor the token is ever printed.
    assert CLIENT_SECRET not in run.text + "".join(run.errors)
    assert token_file.read_text().strip() not in run.text


async def test_a_redirect_with_another_state_is_refused_and_the_right_one_still_counts(
        tmp_path: Path):
    redirect = callback_uri()
    with trio.fail_after(60):
        async with oauth_emulator(redirect) as (emu, base):
            cfg = oauth_config(tmp_path, base, redirect)
            async with connecting(cfg) as run:
                url = await run.authorize_url()
                location = (await browse(url)).headers["location"]
                # A forged redirect (somebody else's code, our listener): refused by `state`.
                forged = location.replace("state=", "state=x")
                refused = await browse(forged)
                assert refused.status_code == 400
                assert "state does not match" in refused.text
                assert not run.done.is_set()
                assert (await browse(location)).status_code == 200
                assert await run.finished() == 0
    _kept(emu, tmp_path / "state" / "hubspot-refresh-token")


async def test_pasted_address_on_a_headless_server(tmp_path: Path):
    redirect = callback_uri()
    with trio.fail_after(60):
        async with oauth_emulator(redirect) as (emu, base):
            cfg = oauth_config(tmp_path, base, redirect)
            async with connecting(cfg, "--no-listen") as run:
                url = await run.authorize_url()
                location = (await browse(url)).headers["location"]
                # Nobody listens: the browser shows an error page, its address holds the code.
                run.paste("https://example.invalid/nothing?code=x&state=wrong")
                run.paste(location)
                assert await run.finished() == 0, run.errors
    assert any("state does not match" in e for e in run.errors)
    _kept(emu, tmp_path / "state" / "hubspot-refresh-token")


async def test_a_refused_authorization_ends_with_hubspots_reason(tmp_path: Path):
    redirect = callback_uri()
    with trio.fail_after(60):
        # The app's settings lack a scope the object syncs need: HubSpot redirects with
        # error=invalid_scope (hubspot-onboarding.md §1).
        async with oauth_emulator(redirect, scopes=frozenset({"oauth"})) as (_emu, base):
            cfg = oauth_config(tmp_path, base, redirect,
                               syncs=DEALS_SYNC.format(db=tmp_path / "app.db"))
            async with connecting(cfg) as run:
                location = (await browse(await run.authorize_url())).headers["location"]
                assert "error=invalid_scope" in location
                await browse(location)
                assert await run.finished() == 1
    assert "invalid_scope" in "".join(run.errors)
    assert not (tmp_path / "state" / "hubspot-refresh-token").exists()


async def test_a_code_hubspot_refuses_is_reported(tmp_path: Path):
    redirect = callback_uri()
    with trio.fail_after(60):
        async with oauth_emulator(redirect) as (_emu, base):
            cfg = oauth_config(tmp_path, base, redirect)
            async with connecting(cfg, "--no-listen") as run:
                state = parse_qs(urlsplit(await run.authorize_url()).query)["state"][0]
                run.paste(f"{redirect}?code=not-a-code&state={state}")
                assert await run.finished() == 1
    assert "BAD_AUTH_CODE" in "".join(run.errors) or "invalid_grant" in "".join(run.errors)


async def test_nothing_arrives_in_time(tmp_path: Path):
    redirect = callback_uri()
    with trio.fail_after(30):
        async with oauth_emulator(redirect) as (_emu, base):
            cfg = oauth_config(tmp_path, base, redirect)
            async with connecting(cfg, "--timeout", "0.5") as run:
                assert await run.finished() == 1
    assert "no authorization arrived within 0.5 s" in "".join(run.errors)


@pytest.mark.parametrize("redirect, message", [
    ("http://127.0.0.1:8976/cb", "does not accept an IP address"),
    ("http://[::1]:8976/cb", "does not accept an IP address"),
    ("http://crmsync.example.com/cb", "only on the host localhost"),
])
def test_redirect_hosts_hubspot_refuses_are_configuration_errors(tmp_path: Path, redirect: str,
                                                                 message: str, capsys):
    from crmsync.cli import connect

    cfg = oauth_config(tmp_path, "http://hub.invalid", redirect)
    assert connect.run(connect_args(cfg)) == 2
    assert message in capsys.readouterr().err


def test_a_token_credential_needs_no_connecting(tmp_path: Path, capsys):
    from crmsync.cli import connect

    cfg = oauth_config(tmp_path, "http://hub.invalid", "http://localhost:1/cb")
    cfg.write_text(cfg.read_text().replace('kind = "oauth"', 'kind = "service_key"\n'
                                           'token_file = "client-secret"\n#'))
    text = cfg.read_text()
    for line in ("client_id", "client_secret_file", "refresh_token_file", "redirect_uri",
                 "authorize_url"):
        text = "\n".join(x for x in text.splitlines() if not x.startswith(line))
    cfg.write_text(text)
    assert connect.run(connect_args(cfg)) == 2
    assert "only an OAuth app is connected this way" in capsys.readouterr().err
