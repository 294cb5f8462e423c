"""The OAuth authorization-code flow and token metadata (hubspot-onboarding.md §1–§2): consent,
code exchange on the v1 and v3 endpoints, `expires_in`, rotation, introspection, revocation,
the private-app token info call and the account details."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import trio
from trio.testing import MockClock

from crmsync.emulators.hubspot.oauth import Credential, OAuthApp

from .conftest import client_for, make_emulator

REDIRECT = "http://localhost:8123/callback"
SCOPES = "crm.objects.contacts.read crm.objects.contacts.write"


def _emulator(**kwargs: object):  # type: ignore[no-untyped-def]
    app = OAuthApp(
        "cid",
        "secret",
        redirect_uris=(REDIRECT,),
        scopes=frozenset(SCOPES.split()) | {"crm.objects.deals.read"},
        app_id=777,
    )
    return make_emulator(oauth_clients={"cid": app}, **kwargs)


async def _authorize(client: httpx.AsyncClient, **params: str) -> httpx.Response:
    query = {"client_id": "cid", "redirect_uri": REDIRECT, "scope": SCOPES, "state": "s-1"}
    query.update(params)
    return await client.get("/oauth/authorize", params=query)


def _query(url: str) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(urlsplit(url).query).items()}


async def _exchange(client: httpx.AsyncClient, code: str, path: str = "/oauth/v1/token",
                    redirect_uri: str = REDIRECT) -> httpx.Response:
    return await client.post(path, data={
        "grant_type": "authorization_code", "client_id": "cid", "client_secret": "secret",
        "code": code, "redirect_uri": redirect_uri})


@pytest.mark.parametrize("token_path", ["/oauth/v1/token", "/oauth/v3/token"])
async def test_consent_code_exchange_and_use(autojump_clock: MockClock, token_path: str) -> None:
    emu = _emulator()
    async with client_for(emu, token=None) as client:
        with trio.fail_after(4000):
            consent = await _authorize(client)
            # The consent page redirects at once to redirect_uri with code and state (§1).
            assert consent.status_code == 302
            target = consent.headers["location"]
            assert target.startswith(REDIRECT + "?")
            params = _query(target)
            assert params["state"] == "s-1"
            r = await _exchange(client, params["code"], token_path)
            assert r.status_code == 200
            token = r.json()
            # AccessTokenResponse: access_token, expires_in, refresh_token, token_type,
            # token_use required; hub_id, user_id, scopes optional (§1).
            assert token["token_use"] == "access_token" and token["expires_in"] == 1800
            assert token["hub_id"] == emu.portal_id
            assert set(token["scopes"]) == set(SCOPES.split())
            auth = {"Authorization": f"Bearer {token['access_token']}"}
            assert (await client.get("/crm/v3/objects/contacts", headers=auth)).status_code == 200
            # A scope not granted: 403 MISSING_SCOPES.
            deals = await client.get("/crm/v3/objects/deals", headers=auth)
            assert deals.status_code == 403 and deals.json()["category"] == "MISSING_SCOPES"
            # The code is single-use (§1).
            again = await _exchange(client, params["code"], token_path)
            assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
            await trio.sleep(1800)
            expired = await client.get("/crm/v3/objects/contacts", headers=auth)
            assert expired.json()["category"] == "EXPIRED_AUTHENTICATION"
            refreshed = await client.post(token_path, data={
                "grant_type": "refresh_token", "client_id": "cid", "client_secret": "secret",
                "refresh_token": token["refresh_token"]})
            assert refreshed.status_code == 200
            assert set(refreshed.json()["scopes"]) == set(SCOPES.split())


async def test_expires_in_is_honoured(autojump_clock: MockClock) -> None:
    emu = _emulator(access_token_seconds=60)
    async with client_for(emu, token=None) as client:
        with trio.fail_after(100):
            code = _query((await _authorize(client)).headers["location"])["code"]
            token = (await _exchange(client, code)).json()
            assert token["expires_in"] == 60
            auth = {"Authorization": f"Bearer {token['access_token']}"}
            await trio.sleep(59)
            assert (await client.get("/crm/v3/objects/contacts", headers=auth)).status_code == 200
            await trio.sleep(1)
            assert (await client.get("/crm/v3/objects/contacts", headers=auth)).status_code == 401


async def test_authorize_refusals(autojump_clock: MockClock) -> None:
    emu = _emulator()
    async with client_for(emu, token=None) as client:
        with trio.fail_after(5):
            unregistered = await _authorize(client, redirect_uri="http://localhost:9/other")
            unknown = await _authorize(client, client_id="nobody")
            too_much = await _authorize(client, scope="crm.objects.companies.write")
            wrong_account = await client.get("/oauth/1/authorize", params={"client_id": "cid"})
            code = _query((await _authorize(client)).headers["location"])["code"]
            other_redirect = await _exchange(client, code, redirect_uri="http://localhost:1/x")
    # No redirect to a URL the app did not register, nor for an unknown app.
    assert unregistered.status_code == unknown.status_code == wrong_account.status_code == 400
    # A scope outside the app's settings comes back as error + error_description (§1).
    refused = _query(too_much.headers["location"])
    assert refused["error"] == "invalid_scope" and refused["state"] == "s-1"
    assert "code" not in refused
    assert other_redirect.status_code == 400


async def test_admin_approval_without_a_browser(autojump_clock: MockClock) -> None:
    emu = _emulator()
    async with client_for(emu, token=None) as client:
        with trio.fail_after(5):
            approved = (await client.post("/_emulator/oauth/authorize", json={
                "client_id": "cid", "redirect_uri": REDIRECT, "scope": SCOPES,
                "state": "xyz"})).json()
            token = await _exchange(client, approved["code"], "/oauth/v3/token")
    assert approved["state"] == "xyz" and approved["redirect"].startswith(REDIRECT)
    assert token.status_code == 200


async def test_rotation_and_revocation(autojump_clock: MockClock) -> None:
    emu = _emulator(rotate_refresh_tokens=True)
    async with client_for(emu, token=None) as client:
        with trio.fail_after(5):
            code = _query((await _authorize(client)).headers["location"])["code"]
            first = (await _exchange(client, code)).json()
            form = {"grant_type": "refresh_token", "client_id": "cid", "client_secret": "secret"}
            second = (await client.post("/oauth/v3/token",
                                        data={**form, "refresh_token": first["refresh_token"]}))
            old = await client.post("/oauth/v3/token",
                                    data={**form, "refresh_token": first["refresh_token"]})
            rt = second.json()["refresh_token"]
            info = await client.get(f"/oauth/v1/refresh-tokens/{rt}")
            revoked = await client.post("/oauth/v3/token/revoke", data={
                "client_id": "cid", "client_secret": "secret", "token": rt})
            after = await client.post("/oauth/v3/token", data={**form, "refresh_token": rt})
            access_still = await client.get(
                "/crm/v3/objects/contacts",
                headers={"Authorization": f"Bearer {second.json()['access_token']}"})
    assert rt != first["refresh_token"] and old.status_code == 400
    assert info.json()["client_id"] == "cid" and info.json()["hub_id"] == emu.portal_id
    assert revoked.status_code == 204 and after.status_code == 400
    # Revoking a refresh token leaves issued access tokens valid until they expire (§1).
    assert access_still.status_code == 200


async def test_introspection_v1_and_v3(autojump_clock: MockClock) -> None:
    emu = _emulator()
    async with client_for(emu, token=None) as client:
        with trio.fail_after(5):
            code = _query((await _authorize(client)).headers["location"])["code"]
            token = (await _exchange(client, code)).json()
            v1 = (await client.get(f"/oauth/v1/access-tokens/{token['access_token']}")).json()
            creds = {"client_id": "cid", "client_secret": "secret"}
            v3_access = (await client.post("/oauth/v3/token/introspect",
                                           data={**creds, "token": token["access_token"]})).json()
            v3_refresh = (await client.post("/oauth/v3/token/introspect", data={
                **creds, "token": token["refresh_token"],
                "token_type_hint": "refresh_token"})).json()
            unknown = (await client.post("/oauth/v3/token/introspect",
                                         data={**creds, "token": "nope"})).json()
            deleted = await client.delete(f"/oauth/v1/refresh-tokens/{token['refresh_token']}")
            gone = await client.get(f"/oauth/v1/refresh-tokens/{token['refresh_token']}")
    # v1 AccessTokenInfoResponse requires token, token_type, hub_id, app_id, user_id, scopes,
    # expires_in (§2).
    assert v1["hub_id"] == emu.portal_id and v1["app_id"] == 777
    assert set(SCOPES.split()) <= set(v1["scopes"]) and v1["expires_in"] == 1800
    required_access = {"active", "app_id", "client_id", "expires_in", "hub_id",
                       "is_private_distribution", "scopes", "signed_access_token", "token",
                       "token_type", "token_use", "user_id"}
    assert required_access <= set(v3_access) and v3_access["active"] is True
    assert v3_access["token_use"] == "access_token"
    assert v3_refresh["token_use"] == "refresh_token" and v3_refresh["active"] is True
    assert unknown == {"active": False}
    assert deleted.status_code == 204 and gone.status_code == 404


async def test_static_credentials_and_account_details(autojump_clock: MockClock) -> None:
    key = Credential("svc-key-1", kind="service_key",
                     scopes=frozenset({"crm.objects.companies.read"}), app_id=5, user_id=6)
    emu = make_emulator(tokens=(key, "pat-na1-legacy"))
    async with client_for(emu, token=None) as client:
        with trio.fail_after(5):
            info = await client.post("/oauth/v2/private-apps/get/access-token-info",
                                     json={"tokenKey": "svc-key-1"})
            unknown = await client.post("/oauth/v2/private-apps/get/access-token-info",
                                        json={"tokenKey": "nope"})
            details = await client.get("/account-info/v3/details",
                                       headers={"Authorization": "Bearer svc-key-1"})
    # {hubId, appId, userId, scopes} (§2 [S]); every app holds `oauth`.
    assert info.json() == {"hubId": emu.portal_id, "appId": 5, "userId": 6,
                           "scopes": ["crm.objects.companies.read", "oauth"]}
    assert unknown.status_code == 404
    body = details.json()
    assert details.status_code == 200 and body["portalId"] == emu.portal_id
    assert {"accountType", "timeZone", "companyCurrency", "uiDomain", "utcOffset"} <= set(body)
