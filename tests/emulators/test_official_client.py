"""Conformance with a client nobody here wrote: HubSpot's official Python SDK
(`hubspot-api-client` 12) drives the emulator over loopback, and its models must parse every
answer (they raise ValueError on a missing required field or a value outside an enum).

The SDK is synchronous (urllib3), so its calls run in a worker thread while hypercorn serves in
the test's nursery. Its host is set through the client config (`host=`), which the SDK copies
onto each API's `Configuration.host`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import httpx
import hubspot
import pytest
import trio
from hubspot import oauth
from hubspot.crm.associations.v4 import models as assoc
from hubspot.crm.contacts import models as contacts
from hubspot.crm.contacts.exceptions import ApiException
from hubspot.crm.owners import models as owners
from hubspot.crm.pipelines import models as pipelines
from hubspot.crm.properties import models as properties
from hubspot.crm.schemas import models as schemas
from hubspot.oauth.exceptions import ApiException as OAuthApiException
from hubspot.settings.users import models as users
from hubspot.utils.oauth import get_auth_url

from crmsync.emulators.hubspot import HubSpotEmulator
from crmsync.emulators.hubspot.oauth import OAuthApp

from .serving import serving

T = TypeVar("T")


async def _call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await trio.to_thread.run_sync(lambda: fn(*args, **kwargs))


@pytest.fixture
def emu() -> HubSpotEmulator:
    emu = HubSpotEmulator()
    emu.seed({"generate": {"companies": 3, "contacts": 25, "deals": 5}, "seed": 1})
    return emu


async def test_objects_list_get_create_update(emu: HubSpotEmulator) -> None:
    with trio.fail_after(30):
        async with serving(emu) as base:
            client = hubspot.Client.create(access_token="test-token", host=base)
            api = client.crm.contacts.basic_api
            page = await _call(api.get_page, limit=10)
            assert isinstance(
                page, contacts.CollectionResponseSimplePublicObjectWithAssociationsForwardPaging
            )
            assert len(page.results) == 10 and page.paging.next.after
            everything = await _call(client.crm.contacts.get_all)  # pages through with `after`
            assert len(everything) == 25

            created = await _call(
                api.create,
                contacts.SimplePublicObjectInputForCreate(
                    properties={"email": "sdk@example.com", "firstname": "Sdk"}, associations=[]
                ),
            )
            assert (
                isinstance(created, contacts.SimplePublicObject)
                and created.properties["email"] == "sdk@example.com"
            )
            got = await _call(
                api.get_by_id, "SDK@example.com", id_property="email", properties=["firstname"]
            )
            assert got.id == created.id and got.properties["firstname"] == "Sdk"
            updated = await _call(
                api.update,
                created.id,
                contacts.SimplePublicObjectInput(properties={"lastname": "Client"}),
            )
            assert updated.properties["lastname"] == "Client"

            with pytest.raises(ApiException) as conflict:
                await _call(
                    api.create,
                    contacts.SimplePublicObjectInputForCreate(
                        properties={"email": "sdk@example.com"}, associations=[]
                    ),
                )
            assert conflict.value.status == 409
            await _call(api.archive, created.id)
            with pytest.raises(ApiException) as gone:
                await _call(api.get_by_id, created.id)
            assert gone.value.status == 404


async def test_batch_endpoints(emu: HubSpotEmulator) -> None:
    with trio.fail_after(30):
        async with serving(emu) as base:
            batch = hubspot.Client.create(
                access_token="test-token", host=base
            ).crm.contacts.batch_api
            created = await _call(
                batch.create,
                contacts.BatchInputSimplePublicObjectBatchInputForCreate(
                    inputs=[
                        contacts.SimplePublicObjectBatchInputForCreate(
                            properties={"email": f"b{i}@example.com"}, associations=[]
                        )
                        for i in range(3)
                    ]
                ),
            )
            assert (
                isinstance(created, contacts.BatchResponseSimplePublicObject)
                and created.status == "COMPLETE"
            )
            ids = [r.id for r in created.results]
            read = await _call(
                batch.read,
                contacts.BatchReadInputSimplePublicObjectId(
                    inputs=[contacts.SimplePublicObjectId(id=i) for i in [*ids, "999999"]],
                    properties=["email"],
                    properties_with_history=[],
                ),
            )
            assert isinstance(read, contacts.BatchResponseSimplePublicObjectWithErrors)  # 207
            assert read.num_errors == 1 and read.errors[0].category == "OBJECT_NOT_FOUND"
            updated = await _call(
                batch.update,
                contacts.BatchInputSimplePublicObjectBatchInput(
                    inputs=[
                        contacts.SimplePublicObjectBatchInput(id=i, properties={"city": "Oslo"})
                        for i in ids
                    ]
                ),
            )
            assert {r.properties["city"] for r in updated.results} == {"Oslo"}
            upserted = await _call(
                batch.upsert,
                contacts.BatchInputSimplePublicObjectBatchInputUpsert(
                    inputs=[
                        contacts.SimplePublicObjectBatchInputUpsert(
                            id="b0@example.com", id_property="email", properties={"city": "Rome"}
                        )
                    ]
                ),
            )
            assert upserted.results[0].new is False
            await _call(
                batch.archive,
                contacts.BatchInputSimplePublicObjectId(
                    inputs=[contacts.SimplePublicObjectId(id=i) for i in ids]
                ),
            )
    assert not any(r["id"] in ids for r in emu.records("contacts"))


async def test_search(emu: HubSpotEmulator) -> None:
    with trio.fail_after(30):
        async with serving(emu) as base:
            search = hubspot.Client.create(
                access_token="test-token", host=base
            ).crm.contacts.search_api
            request = contacts.PublicObjectSearchRequest(
                filter_groups=[
                    contacts.FilterGroup(
                        filters=[contacts.Filter(property_name="email", operator="HAS_PROPERTY")]
                    )
                ],
                sorts=["-createdate"],
                properties=["email", "firstname"],
                limit=10,
                after="0",
            )
            first = await _call(search.do_search, public_object_search_request=request)
            assert isinstance(
                first, contacts.CollectionResponseWithTotalSimplePublicObjectForwardPaging
            )
            assert (
                first.total == 25 and len(first.results) == 10 and first.paging.next.after == "10"
            )


async def test_associations_v4(emu: HubSpotEmulator) -> None:
    with trio.fail_after(30):
        async with serving(emu) as base:
            v4 = hubspot.Client.create(access_token="test-token", host=base).crm.associations.v4
            [contact_id, other_id] = emu.add_records(
                "contacts", [{"email": "x@example.com"}, {"email": "y@example.com"}]
            )
            [company_id] = emu.add_records("companies", [{"name": "Sdk Co"}])
            created = await _call(
                v4.batch_api.create,
                "contacts",
                "companies",
                assoc.BatchInputPublicAssociationMultiPost(
                    inputs=[
                        assoc.PublicAssociationMultiPost(
                            _from=assoc.PublicObjectId(id=contact_id),
                            to=assoc.PublicObjectId(id=company_id),
                            types=[
                                assoc.AssociationSpec(
                                    association_category="HUBSPOT_DEFINED", association_type_id=1
                                )
                            ],
                        )
                    ]
                ),
            )
            assert isinstance(created, assoc.BatchResponseLabelsBetweenObjectPair)
            assert created.results[0].labels == ["Primary"]
            default = await _call(
                v4.basic_api.create_default, "contacts", other_id, "companies", company_id
            )
            assert isinstance(default, assoc.BatchResponsePublicDefaultAssociation)
            read = await _call(
                v4.batch_api.get_page,
                "contacts",
                "companies",
                assoc.BatchInputPublicFetchAssociationsBatchRequest(
                    inputs=[assoc.PublicFetchAssociationsBatchRequest(id=contact_id)]
                ),
            )
            assert isinstance(read, assoc.BatchResponsePublicAssociationMultiWithLabel)
            types = {t.type_id for t in read.results[0].to[0].association_types}
            assert types == {1, 279}
            listed = await _call(v4.basic_api.get_page, "companies", company_id, "contacts")
            assert {str(r.to_object_id) for r in listed.results} == {contact_id, other_id}
            await _call(
                v4.batch_api.archive,
                "contacts",
                "companies",
                assoc.BatchInputPublicAssociationMultiArchive(
                    inputs=[
                        assoc.PublicAssociationMultiArchive(
                            _from=assoc.PublicObjectId(id=contact_id),
                            to=[assoc.PublicObjectId(id=company_id)],
                        )
                    ]
                ),
            )
    assert emu.associations("contacts", contact_id, "companies") == []


async def test_pipelines_and_properties(emu: HubSpotEmulator) -> None:
    with trio.fail_after(30):
        async with serving(emu) as base:
            crm = hubspot.Client.create(access_token="test-token", host=base).crm
            all_pipelines = await _call(crm.pipelines.pipelines_api.get_all, "deals")
            assert isinstance(all_pipelines, pipelines.CollectionResponsePipelineNoPaging)
            assert all_pipelines.results[0].id == "default"
            assert len(all_pipelines.results[0].stages) == 7
            created = await _call(
                crm.pipelines.pipelines_api.create,
                "deals",
                pipelines.PipelineInput(
                    label="SDK pipeline",
                    display_order=2,
                    stages=[
                        pipelines.PipelineStageInput(
                            label="Open", display_order=0, metadata={"probability": "0.5"}
                        )
                    ],
                ),
            )
            assert isinstance(created, pipelines.Pipeline)
            stage = await _call(
                crm.pipelines.pipeline_stages_api.create,
                "deals",
                created.id,
                pipelines.PipelineStageInput(
                    label="Won", display_order=1, metadata={"probability": "1.0"}
                ),
            )
            assert (
                isinstance(stage, pipelines.PipelineStage) and stage.metadata["isClosed"] == "true"
            )

            props = await _call(crm.properties.core_api.get_all, "contacts")
            assert isinstance(props, properties.CollectionResponsePropertyNoPaging)
            assert "lifecyclestage" in {p.name for p in props.results}
            for obj in ("companies", "deals", "line_items", "invoices"):
                await _call(crm.properties.core_api.get_all, obj)
            email = await _call(crm.properties.core_api.get_by_name, "contacts", "email")
            assert isinstance(email, properties.ModelProperty)
            custom = await _call(
                crm.properties.core_api.create,
                "contacts",
                properties.PropertyCreate(
                    name="sdk_id",
                    label="SDK id",
                    type="string",
                    field_type="text",
                    group_name="contactinformation",
                    has_unique_value=True,
                ),
            )
            assert custom.has_unique_value is True
            deals = await _call(
                crm.deals.basic_api.get_page, limit=5, associations=["contacts", "companies"]
            )
            assert len(deals.results) == 5
            # A company with more associated contacts than a v3 read carries (100 a type):
            # the SDK's SimplePublicObjectWithAssociations parses the cut list and its paging.
            [big] = emu.add_records("companies", [{"name": "Big"}])
            for c in emu.add_records("contacts", [{"email": f"m{i}@example.com"}
                                                  for i in range(101)]):
                emu.associate("companies", big, "contacts", c)
            page = await _call(crm.companies.basic_api.get_page, limit=100,
                               associations=["contacts"])
            got = next(r for r in page.results if r.id == big).associations["contacts"]
            assert len(got.results) == 100 and got.paging.next.after


async def test_owners_users_schemas_and_other_object_types(emu: HubSpotEmulator) -> None:
    emu.state.owners.add({"email": "rep@example.com", "firstName": "Rep",
                          "teams": [{"id": "7", "name": "Sales", "primary": True}]})
    with trio.fail_after(30):
        async with serving(emu) as base:
            client = hubspot.Client.create(access_token="test-token", host=base)
            page = await _call(client.crm.owners.owners_api.get_page, limit=1)
            assert isinstance(page, owners.CollectionResponsePublicOwnerForwardPaging)
            assert page.paging.next.after and page.paging.next.link.startswith(base)
            everyone = await _call(client.crm.owners.get_all)  # pages through with `after`
            rep = next(o for o in everyone if o.email == "rep@example.com")
            assert isinstance(rep, owners.PublicOwner) and rep.teams[0].name == "Sales"
            by_user = await _call(client.crm.owners.owners_api.get_by_id, rep.user_id,
                                  id_property="userId")
            assert by_user.id == rep.id
            users_page = await _call(client.settings.users.users_api.get_page)
            assert isinstance(users_page, users.CollectionResponsePublicUserForwardPaging)
            assert "rep@example.com" in {u.email for u in users_page.results}
            schemas_all = await _call(client.crm.schemas.core_api.get_all)
            assert isinstance(schemas_all, schemas.CollectionResponseObjectSchemaNoPaging)
            notes = await _call(client.crm.objects.basic_api.get_page, "notes")
            assert notes.results == []
            tickets = await _call(client.crm.tickets.basic_api.get_page)
            assert tickets.results == []


async def test_oauth_code_exchange_and_token_metadata() -> None:
    redirect = "http://localhost:8400/cb"
    emu = HubSpotEmulator(oauth_clients={"cid": OAuthApp("cid", "cs", redirect_uris=(redirect,))})
    with trio.fail_after(30):
        async with serving(emu) as base:
            client = hubspot.Client.create(host=base)
            url = get_auth_url("cid", redirect, scope=("crm.objects.contacts.read",), state="st")
            approved = emu.auth.authorize(
                {k: v[-1] for k, v in parse_qs(urlsplit(url).query).items()})
            code = parse_qs(urlsplit(approved).query)["code"][0]
            tokens = await _call(client.oauth.tokens_api.create, grant_type="authorization_code",
                                 code=code, redirect_uri=redirect, client_id="cid",
                                 client_secret="cs")
            assert isinstance(tokens, oauth.TokenResponseIF) and tokens.expires_in == 1800
            info = await _call(client.oauth.access_tokens_api.get, tokens.access_token)
            assert isinstance(info, oauth.AccessTokenInfoResponse)
            assert info.hub_id == emu.portal_id
            assert "crm.objects.contacts.read" in info.scopes
            refresh = await _call(client.oauth.refresh_tokens_api.get, tokens.refresh_token)
            assert isinstance(refresh, oauth.RefreshTokenInfoResponse)
            assert refresh.client_id == "cid"
            refreshed = await _call(client.oauth.tokens_api.create, grant_type="refresh_token",
                                    refresh_token=tokens.refresh_token, client_id="cid",
                                    client_secret="cs")
            assert refreshed.access_token != tokens.access_token
            await _call(client.oauth.refresh_tokens_api.archive, tokens.refresh_token)
            with pytest.raises(OAuthApiException) as gone:
                await _call(client.oauth.refresh_tokens_api.get, tokens.refresh_token)
            assert gone.value.status == 404


async def test_pipelines_of_the_legacy_v1_path(emu: HubSpotEmulator) -> None:
    # The SDK has no v1 pipelines client: the answer is read with its v3 models' names mapped.
    with trio.fail_after(30):
        async with serving(emu) as base:
            client = hubspot.Client.create(access_token="test-token", host=base)
            v3 = await _call(client.crm.pipelines.pipelines_api.get_all, "deals")
            async with httpx.AsyncClient(base_url=base,
                                         headers={"Authorization": "Bearer test-token"}) as raw:
                v1 = (await raw.get("/crm-pipelines/v1/pipelines/deals")).json()
    assert [p["pipelineId"] for p in v1["results"]] == [p.id for p in v3.results]
    assert [s["stageId"] for s in v1["results"][0]["stages"]] == [
        s.id for s in v3.results[0].stages]
