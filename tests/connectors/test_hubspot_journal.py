"""The webhooks journal client and its client-credentials token against the HubSpot emulator
(in process, MockClock): hubspot-onboarding.md §1 (the client_credentials grant) and §6 (the
journal: subscriptions, entries by offset, files behind `url`s, 3-day retention)."""

from __future__ import annotations

import json
import time
from urllib.parse import parse_qs

import httpx
import pytest
import trio

from crmsync.config.model import JOURNAL_SCOPES
from crmsync.connectors.base import ConnectorError
from crmsync.connectors.hubspot.client_credentials import ClientCredentialsAuth
from crmsync.connectors.hubspot.http import HubSpotHttp
from crmsync.connectors.hubspot.journal import (
    EntryGone,
    EntryRef,
    JournalClient,
    OffsetGone,
    UnreadableEntry,
    account_portal_id,
)
from crmsync.connectors.ratelimit import RateBudget
from crmsync.emulators.hubspot import HubSpotEmulator
from crmsync.emulators.hubspot.oauth import OAuthApp

BASE = "http://hubspot.test"
CLIENT_ID = "journal-client"
SECRET = "journal-secret-0123456789"
DAY = 86400
WALL = time.time()


class Recorder(httpx.AsyncBaseTransport):
    """The emulator's ASGI app underneath, every request kept (with its headers)."""

    def __init__(self, emu: HubSpotEmulator) -> None:
        self.inner = httpx.ASGITransport(app=emu.app)
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return await self.inner.handle_async_request(request)


def make_emulator(**kw) -> HubSpotEmulator:
    return HubSpotEmulator(tokens=("crm-token",), seed=0, clock=trio.current_time,
                           now_ms=lambda: int((WALL + trio.current_time()) * 1000),
                           oauth_clients={CLIENT_ID: OAuthApp(CLIENT_ID, SECRET)}, **kw)


def make_client(emu: HubSpotEmulator, *, secret: str = SECRET, scopes=JOURNAL_SCOPES,
                max_file_bytes: int = 1 << 20) -> tuple[JournalClient, ClientCredentialsAuth,
                                                        Recorder]:
    auth = ClientCredentialsAuth(client_id=CLIENT_ID, client_secret=secret, scopes=scopes)
    transport = Recorder(emu)
    client = httpx.AsyncClient(base_url=BASE, auth=auth, transport=transport)
    return (JournalClient(client, portal_id=emu.portal_id, max_file_bytes=max_file_bytes,
                          request_timeout=10), auth, transport)


# --- the client-credentials token ----------------------------------------------------------------


async def test_the_token_comes_from_the_client_credentials_grant(autojump_clock):
    emu = make_emulator()
    journal, auth, transport = make_client(emu)
    assert await journal.entries_after(None, 10) == []
    grant = transport.requests[0]
    # hubspot-onboarding.md §1: POST /oauth/v3/token, form-encoded, grant_type
    # client_credentials with the journal scopes (space-separated).
    assert (grant.method, grant.url.path) == ("POST", "/oauth/v3/token")
    form = parse_qs(grant.content.decode())
    assert form["grant_type"] == ["client_credentials"]
    assert form["client_id"] == [CLIENT_ID] and form["client_secret"] == [SECRET]
    assert form["scope"] == [" ".join(JOURNAL_SCOPES)]
    read = transport.requests[1]
    assert read.headers["Authorization"].startswith("Bearer ")
    assert auth.statistics().grants == 1


async def test_the_token_is_renewed_before_it_expires(autojump_clock):
    emu = make_emulator(access_token_seconds=600)
    journal, auth, _transport = make_client(emu)
    for _ in range(12):  # an hour of reads every 5 minutes: six token lifetimes
        await journal.entries_after(None, 1)
        await trio.sleep(300)
    assert auth.statistics().grants >= 6
    assert not [r for r in emu.request_log if r[2] == 401]


async def test_an_early_expiry_gets_one_new_token_and_the_call_again(autojump_clock):
    emu = make_emulator()
    journal, auth, _transport = make_client(emu)
    await journal.entries_after(None, 1)
    emu.auth.expire_access_tokens()  # HubSpot answers 401 EXPIRED_AUTHENTICATION
    assert await journal.entries_after(None, 1) == []
    assert auth.statistics().grants == 2


async def test_a_wrong_secret_is_a_configuration_error_naming_the_setting(autojump_clock):
    emu = make_emulator()
    journal, _auth, _ = make_client(emu, secret="not-the-secret")
    with pytest.raises(ConnectorError) as err:
        await journal.entries_after(None, 1)
    assert err.value.kind == "config"
    assert "hub.journal" in err.value.message and "not-the-secret" not in err.value.message


async def test_scopes_the_app_may_not_have_are_refused(autojump_clock):
    emu = make_emulator()
    journal, _, _ = make_client(emu, scopes=("crm.objects.contacts.read",))
    with pytest.raises(ConnectorError) as err:
        await journal.subscriptions()
    assert err.value.kind == "config"


# --- subscriptions -------------------------------------------------------------------------------


async def test_subscriptions_are_created_once_with_the_spec_fields(autojump_clock):
    emu = make_emulator()
    journal, _, transport = make_client(emu)
    created = await journal.ensure_subscriptions({"contacts", "companies"}, {"contacts"})
    assert created == ["object:companies", "object:contacts", "association:contacts"]
    posts = [r for r in transport.requests if r.method == "POST"
             and r.url.path == "/webhooks-journal/subscriptions/2026-03"]
    body = json.loads(posts[0].content)
    # SPEC ObjectSubscriptionUpsertRequest requires these.
    assert set(body) >= {"subscriptionType", "objectTypeId", "portalId", "actions",
                         "objectIds", "properties"}
    assert body["portalId"] == emu.portal_id and body["objectTypeId"] == "0-2"
    assert set(body["actions"]) == {"CREATE", "UPDATE", "DELETE", "MERGE", "RESTORE"}
    kinds = {(s.subscription_type, s.object_type.name) for s in emu.journal.subscriptions.values()}
    assert kinds == {("OBJECT", "contacts"), ("OBJECT", "companies"),
                     ("ASSOCIATION", "contacts")}
    assert await journal.ensure_subscriptions({"contacts", "companies"}, {"contacts"}) == []


async def test_a_narrowed_subscription_is_replaced(autojump_clock):
    emu = make_emulator()
    emu.journal.upsert({"subscriptionType": "OBJECT", "objectTypeId": "0-1",
                        "actions": ["CREATE"], "properties": ["email"]})
    journal, _, _ = make_client(emu)
    assert await journal.ensure_subscriptions({"contacts"}) == ["object:contacts"]
    (sub,) = emu.journal.subscriptions.values()
    assert not sub.properties and "UPDATE" in sub.actions


# --- entries -------------------------------------------------------------------------------------


async def test_entries_are_read_by_offset_with_their_events(autojump_clock):
    emu = make_emulator()
    journal, _, transport = make_client(emu)
    await journal.ensure_subscriptions({"contacts"})
    assert await journal.entries_after(None, 10) == []  # nothing journaled yet
    (cid,) = emu.add_records("contacts", [{"email": "a@example.com"}])
    emu.update_record("contacts", cid, {"firstname": "A"})
    (ref,) = await journal.entries_after(None, 10)
    entry = await journal.fetch(ref)
    assert entry.offset == ref.offset and not entry.skipped
    kinds = [(e.object, e.change, e.object_id) for e in entry.events]
    assert ("contacts", "creation", cid) in kinds and ("contacts", "propertyChange", cid) in kinds
    assert all(e.portal_id == emu.portal_id for e in entry.events)
    # The local journal, narrowed to this account.
    reads = [r for r in transport.requests if r.url.path.startswith("/webhooks-journal/journal")]
    assert all(r.url.params["installPortalId"] == str(emu.portal_id) for r in reads)
    assert all(r.url.path.startswith("/webhooks-journal/journal-local/2026-03/") for r in reads)
    # The pre-signed file url is fetched without the bearer token.
    (file_get,) = [r for r in transport.requests if r.url.path.startswith("/_emulator/journal")]
    assert "Authorization" not in file_get.headers
    assert await journal.entries_after(ref.offset, 10) == []
    emu.update_record("contacts", cid, {"lastname": "B"})
    (nxt,) = await journal.entries_after(ref.offset, 10)
    assert nxt.offset != ref.offset
    assert (await journal.latest()) == nxt


async def test_an_aged_out_offset_is_offset_gone(autojump_clock):
    emu = make_emulator()
    journal, _, _ = make_client(emu)
    await journal.ensure_subscriptions({"contacts"})
    emu.add_records("contacts", [{"email": "a@example.com"}])
    (ref,) = await journal.entries_after(None, 10)
    await trio.sleep(3 * DAY + 60)  # "Data is kept for 3 days"
    with pytest.raises(OffsetGone) as err:
        await journal.entries_after(ref.offset, 10)
    assert err.value.offset == ref.offset
    with pytest.raises(OffsetGone):
        await journal.entries_after("00000000-0000-4000-8000-000000000000", 10)


async def test_an_expired_url_and_a_gone_file(autojump_clock):
    emu = make_emulator()
    journal, _, _ = make_client(emu)
    await journal.ensure_subscriptions({"contacts"})
    emu.add_records("contacts", [{"email": "a@example.com"}])
    (ref,) = await journal.entries_after(None, 10)
    await trio.sleep(16 * 60)  # past the url's expiresAt
    with pytest.raises(EntryGone) as err:
        await journal.fetch(ref)
    assert err.value.expired
    await trio.sleep(3 * DAY)
    (fresh,) = [EntryRef(ref.offset, ref.url.split("?")[0] + "?expires=99999999999999")]
    with pytest.raises(EntryGone) as err:
        await journal.fetch(fresh)
    assert not err.value.expired


async def test_a_file_over_the_size_bound_is_unreadable(autojump_clock):
    emu = make_emulator()
    journal, _, _ = make_client(emu, max_file_bytes=2000)
    await journal.ensure_subscriptions({"contacts"})
    emu.add_records("contacts", [{"email": f"c{i}@example.com", "firstname": "x" * 100}
                                 for i in range(20)])
    refs = await journal.entries_after(None, 10)
    with pytest.raises(UnreadableEntry, match="max_file_bytes"):
        await journal.fetch(refs[0])


def _files(answer: httpx.Response) -> httpx.MockTransport:
    async def handler(request: httpx.Request) -> httpx.Response:
        return answer
    return httpx.MockTransport(handler)


@pytest.mark.parametrize(("answer", "message"), [
    (httpx.Response(200, content=b"{not json"), "not JSON"),
    (httpx.Response(200, json={"currentOffset": "other", "events": []}), "other"),
    (httpx.Response(200, json={"currentOffset": "o-1", "events": {"a": 1}}), "no list"),
])
async def test_a_file_that_is_not_a_journal_file_is_unreadable(autojump_clock, answer, message):
    client = httpx.AsyncClient(transport=_files(answer))
    journal = JournalClient(client, portal_id=1)
    with pytest.raises(UnreadableEntry, match=message):
        await journal.fetch(EntryRef("o-1", "https://files.example/o-1"))


async def test_bad_events_are_skipped_with_their_reason(autojump_clock):
    good = {"eventId": 7, "subscriptionType": "contact.propertyChange", "objectId": 5,
            "occurredAt": 1, "portalId": 1, "propertyName": "email"}
    answer = httpx.Response(200, json={"currentOffset": "o-1",
                                       "events": [good, {"eventId": 8}, "junk"]})
    journal = JournalClient(httpx.AsyncClient(transport=_files(answer)), portal_id=1)
    entry = await journal.fetch(EntryRef("o-1", "https://files.example/o-1"))
    assert [e.event_id for e in entry.events] == ["7"]
    assert len(entry.skipped) == 2 and "event 1" in entry.skipped[0]


async def test_a_url_that_is_not_http_is_refused(autojump_clock):
    journal = JournalClient(httpx.AsyncClient(), portal_id=1)
    with pytest.raises(UnreadableEntry, match="not http"):
        await journal.fetch(EntryRef("o-1", "file:///etc/passwd"))


async def test_the_account_id_comes_from_account_info(autojump_clock):
    emu = make_emulator(portal_id=4242)
    client = httpx.AsyncClient(base_url=BASE, transport=httpx.ASGITransport(app=emu.app),
                               headers={"Authorization": "Bearer crm-token"})
    assert await account_portal_id(HubSpotHttp(client, RateBudget())) == 4242


@pytest.mark.parametrize("type_id", ["0-1", "contact"])
async def test_an_existing_subscription_named_either_way_is_kept(autojump_clock, type_id):
    # SPEC SubscriptionResponse: objectTypeId "can be a standard CRM object (e.g. 'contact')".
    posted: list[httpx.Request] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            posted.append(request)
            return httpx.Response(200, json={})
        return httpx.Response(200, json={"results": [{
            "id": 1, "appId": 2, "subscriptionType": "OBJECT", "objectTypeId": type_id,
            "portalId": 7, "actions": ["CREATE", "UPDATE", "DELETE", "MERGE", "RESTORE"],
            "objectIds": [], "properties": [], "createdAt": "x", "updatedAt": "x"}]})

    journal = JournalClient(httpx.AsyncClient(base_url=BASE,
                                              transport=httpx.MockTransport(handler)),
                            portal_id=7)
    assert await journal.ensure_subscriptions({"contacts"}) == []
    assert posted == []
    assert await journal.ensure_subscriptions({"companies"}) == ["object:companies"]


async def test_a_file_answering_a_lasting_error_is_unreadable_not_a_stall(autojump_clock):
    journal = JournalClient(httpx.AsyncClient(transport=_files(httpx.Response(410))),
                            portal_id=1)
    with pytest.raises(UnreadableEntry, match="410"):
        await journal.fetch(EntryRef("o-1", "https://files.example/o-1"))
    moved = httpx.Response(302, headers={"Location": "https://elsewhere.example/"})
    journal = JournalClient(httpx.AsyncClient(transport=_files(moved)), portal_id=1)
    with pytest.raises(UnreadableEntry, match="302"):
        await journal.fetch(EntryRef("o-1", "https://files.example/o-1"))


async def test_a_file_host_that_is_down_is_retried_then_transient(autojump_clock):
    journal = JournalClient(httpx.AsyncClient(transport=_files(httpx.Response(503))),
                            portal_id=1)
    with pytest.raises(ConnectorError) as err:
        await journal.fetch(EntryRef("o-1", "https://files.example/o-1"))
    assert not isinstance(err.value, UnreadableEntry) and err.value.kind == "transient"
