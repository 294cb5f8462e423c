"""HubSpot ⇄ Pipedrive end to end, over loopback HTTP (pd_system.py): the daemon as a real
process against both emulators, webhooks both ways.

Facts the expectations rest on (shared/reference/pipedrive-api.md): persons carry `emails` /
`phones` arrays with one primary entry (A.3); lists leave deleted persons out and deals are
listed with `status=deleted` (emulator README, [PD-spec-v2]); webhooks v2 carry
`meta.change_source` and `meta.user_id` (A.8); events during a webhook ban are lost (A.8).
"""

from __future__ import annotations

import re
import signal

import pytest
import trio

from .pd_system import CANARIES, COMPANIES, CONTACTS, DEALS, ctl_json, pd_system, run_cli

pytestmark = pytest.mark.slow


def _person(email: str | None, name: str, *more_emails: str, phone: str | None = None
            ) -> dict:
    body: dict = {"name": name}
    emails = ([{"value": email, "primary": True, "label": "work"}] if email else [])
    emails += [{"value": e, "label": "home"} for e in more_emails]
    if emails:
        body["emails"] = emails
    if phone:
        body["phones"] = [{"value": phone, "primary": True}]
    return body


async def test_initial_sync_pairs_creates_and_reports_duplicates_and_exclusions(tmp_path):
    with trio.fail_after(240):
        async with pd_system(tmp_path) as s:
            p_ada, _, p_bob2, p_anon, p_bad, _ = s.pd.add_records("persons", [
                _person("ada@example.com", "Ada Pipedrive", "ada.home@example.com"),
                _person("bob@example.com", "Bob Only", phone="+1 555 0100"),
                _person("BOB@example.com", "Bob Again"),  # same match key: a duplicate
                _person(None, "Nobody Without Email"),
                _person("not-an-email", "Bad Email"),
                _person("cy@example.com", "Cy Two", "cy.other@example.com"),
            ])
            s.hub.add_records("contacts", [
                {"email": "ada@example.com", "firstname": "Ada", "lastname": "Hub",
                 "phone": "+1 555 0199"},
                {"email": "hal@example.com", "firstname": "Hal", "lastname": "Hub"},
            ])
            s.write_config(CONTACTS.format(extra=""))
            await s.start_daemon()
            await s.wait_synced("contacts")

            hub = s.contacts_by_email()
            persons = s.persons_by_email()
            # Every person with a valid email is in HubSpot, every contact in Pipedrive.
            assert set(hub) == {"ada@example.com", "bob@example.com", "cy@example.com",
                                "hal@example.com"}
            assert {"ada@example.com", "hal@example.com", "bob@example.com",
                    "cy@example.com"} <= set(persons)
            # The pair took the hub's values where they differ (conflict winner = hub) ...
            ada = next(p for p in s.persons() if p["id"] == p_ada)
            assert (ada["first_name"], ada["last_name"]) == ("Ada", "Hub")
            # ... and the hub's phone became the primary phone; the secondary email stayed.
            assert [e["value"] for e in ada["emails"]] == ["ada@example.com",
                                                           "ada.home@example.com"]
            assert [p["value"] for p in ada["phones"] if p["primary"]] == ["+1 555 0199"]
            # Pipedrive's primary values are HubSpot's single properties.
            assert hub["bob@example.com"]["properties"]["phone"] == "+1 555 0100"
            assert hub["hal@example.com"]["properties"]["firstname"] == "Hal"
            hal = persons["hal@example.com"]
            assert (hal["first_name"], hal["last_name"]) == ("Hal", "Hub")

            failed = s.items("contacts", "failed")
            assert [(r[1], r[3]) for r in failed] == [(str(p_bob2), "duplicate")]
            excluded = {r[1]: r[3] for r in s.items("contacts", "excluded")}
            assert excluded == {str(p_anon): "no_email", str(p_bad): "invalid_email"}
            # Nothing made twice on either side.
            assert len(s.hub.records("contacts")) == 4
            assert len(s.persons()) == 7
            # crmsync registered its webhooks (one per object) with Basic credentials.
            hooks = [h for h in s.pd.webhooks.hooks.values()]
            assert sorted(h.event_object for h in hooks) == ["deal", "organization", "person"]
            assert all(h.http_auth_user == "crmsync-hooks" for h in hooks)
            out = s.procs.output()
            assert not [c for c in CANARIES if c in out]


async def test_incremental_both_ways_by_webhooks_and_echoes_are_dropped(tmp_path):
    with trio.fail_after(240):
        async with pd_system(tmp_path) as s:
            (pid,) = s.pd.add_records("persons", [_person("eve@example.com", "Eve Start")])
            (hid,) = s.hub.add_records("contacts", [{"email": "hub@example.com",
                                                     "firstname": "Hub", "lastname": "One"}])
            # Polling far apart: only webhooks can bring the changes in time.
            s.write_config(CONTACTS.format(extra=""), poll_interval=3600)
            await s.start_daemon()
            await s.wait_synced("contacts")
            assert s.daemon is not None

            # Pipedrive -> HubSpot: a change made in Pipedrive's app (webhook v2).
            s.pd.update_record("persons", pid, {"first_name": "Evelyn"})
            await s.eventually(lambda: s.contacts_by_email()["eve@example.com"]["properties"]
                               .get("firstname") == "Evelyn")
            # ... and one made through the API by another user (change_source api).
            r = await s.pd_api.patch(f"/api/v2/persons/{pid}", json={"last_name": "Api"})
            assert r.status_code == 200, r.text
            await s.eventually(lambda: s.contacts_by_email()["eve@example.com"]["properties"]
                               .get("lastname") == "Api")
            # HubSpot -> Pipedrive.
            s.hub.update_record("contacts", hid, {"lastname": "Changed"})
            await s.eventually(lambda: s.persons_by_email()["hub@example.com"]["last_name"]
                               == "Changed")
            # A new person in Pipedrive arrives in HubSpot.
            s.pd.add_records("persons", [_person("new@example.com", "New Person")])
            await s.eventually(lambda: "new@example.com" in s.contacts_by_email())
            # Three human changes reached the inbox, once each (keyed by meta.id); crmsync's
            # own two writes (the create of hub@example.com, its lastname) came back as
            # webhooks too (change_source api, crmsync's user) and were dropped as echoes.
            keys = [k for (k,) in s.state_rows(
                "SELECT event_key FROM inbox WHERE source = 'app:pd:contacts'")]
            assert len(keys) == 3 and all(k.startswith("pipedrive:") for k in keys)
            person_events = [d for d in s.pd.webhooks.log.deliveries if d.entity == "person"]
            assert len({d.event_id for d in person_events}) >= 5


async def test_polling_alone_brings_changes_both_ways(tmp_path):
    """No webhooks configured on either side: HubSpot's search polling and Pipedrive's
    updated_since polling carry every change."""
    with trio.fail_after(240):
        async with pd_system(tmp_path, webhooks=False) as s:
            (pid,) = s.pd.add_records("persons", [_person("poll@example.com", "Pol Ling")])
            (hid,) = s.hub.add_records("contacts", [{"email": "hpoll@example.com",
                                                     "firstname": "Hub", "lastname": "Poll"}])
            s.write_config(CONTACTS.format(extra=""))
            await s.start_daemon()
            await s.wait_synced("contacts")
            s.pd.update_record("persons", pid, {"first_name": "Polled"})
            s.hub.update_record("contacts", hid, {"lastname": "Polled"})
            await s.eventually(lambda: s.contacts_by_email()["poll@example.com"]["properties"]
                               .get("firstname") == "Polled")
            await s.eventually(lambda: s.persons_by_email()["hpoll@example.com"]["last_name"]
                               == "Polled")
            assert s.pd.webhooks.hooks == {}
            assert s.state_rows("SELECT count(*) FROM inbox") == [(0,)]


async def test_polling_alone_brings_changes_and_deletes_lost_in_a_webhook_ban(tmp_path):
    """Webhook events lost (the receiver failed, Pipedrive banned the webhook and dropped
    what happened meanwhile) are recovered by `updated_since` polling, and deletes — which
    lists leave out — by the delete sweep."""
    with trio.fail_after(240):
        async with pd_system(tmp_path) as s:
            pids = s.pd.add_records("persons", [_person(f"p{i}@example.com", f"Per Son{i}")
                                                for i in range(3)])
            s.write_config(CONTACTS.format(extra="on_delete = \"propagate\""),
                           connection_extra="delete_sweep_interval_seconds = 2")
            await s.start_daemon()
            await s.wait_synced("contacts")
            # Pipedrive bans the webhooks: every event from now on is lost.
            for hook in s.pd.webhooks.hooks.values():
                hook.banned_until = s.pd.clock.now() + 3600
            s.pd.update_record("persons", pids[0], {"first_name": "Polled"})
            s.pd.delete_record("persons", pids[1])
            await s.eventually(lambda: s.contacts_by_email()["p0@example.com"]["properties"]
                               .get("firstname") == "Polled")
            await s.eventually(lambda: "p1@example.com" not in s.contacts_by_email())
            assert len(s.pd.webhooks.log.lost) >= 2
            gone = s.items("contacts", "deleted")
            assert [(r[1], r[2]) for r in gone] == [(str(pids[1]), "deleted")]


async def test_companies_match_on_website_domain_and_deals_follow_stages(tmp_path):
    with trio.fail_after(240):
        async with pd_system(tmp_path) as s:
            (org_acme, _) = s.pd.add_records("organizations", [
                {"name": "Acme Corporation", "website": "https://www.acme.example/about"},
                {"name": "Solo Org"},
            ])
            (ada,) = s.pd.add_records("persons", [
                {**_person("ada@acme.example", "Ada Acme"), "org_id": org_acme}])
            stages = {st["name"]: st["id"] for st in s.pd.records("stages")}
            s.pd.add_records("deals", [
                {"title": "Pd Deal", "stage_id": stages["Qualified"], "value": 1500,
                 "person_id": ada, "org_id": org_acme}])
            s.hub.add_records("companies", [{"name": "ACME", "domain": "acme.example"},
                                            {"name": "Hub Co", "domain": "hubco.example"}])
            s.write_config(
                CONTACTS.format(extra='associations = ["companies"]')
                + COMPANIES.format(extra="")
                + DEALS.format(extra='associations = ["contacts", "companies"]\n'
                                     '[[syncs.stage_map]]\nhub_pipeline = "default"\n'
                                     'hub_stage = "qualifiedtobuy"\napp_pipeline = "1"\n'
                                     f'app_stage = "{stages["Qualified"]}"\n'))
            await s.start_daemon()
            await s.wait_synced("contacts", "companies", "deals")
            companies = {c["properties"]["name"]: c for c in s.hub.records("companies")}
            # Paired by the website's host (no duplicate of Acme), hub wins the name.
            assert set(companies) == {"ACME", "Hub Co", "Solo Org"}
            orgs = {o["name"]: o for o in s.pd.records("organizations")}
            assert set(orgs) == {"ACME", "Hub Co", "Solo Org"}
            assert orgs["ACME"]["id"] == org_acme
            assert orgs["Hub Co"]["website"] == "hubco.example"
            # The deal, its stage through the map, its associations as Pipedrive keys.
            (deal,) = s.hub.records("deals")
            assert deal["properties"]["dealstage"] == "qualifiedtobuy"
            assert deal["properties"]["amount"] == "1500"
            contact = s.contacts_by_email()["ada@acme.example"]

            def associated() -> bool:
                return (s.hub.associations("deals", deal["id"], "contacts") == [contact["id"]]
                        and s.hub.associations("deals", deal["id"], "companies")
                        == [companies["ACME"]["id"]]
                        and s.hub.associations("contacts", contact["id"], "companies")
                        == [companies["ACME"]["id"]])

            await s.eventually(associated)
            # Closing it in HubSpot wins it in Pipedrive (Closed Won ⇄ the pipeline's Won,
            # mapped by label); a stage change in Pipedrive moves it back in HubSpot.
            s.hub.update_record("deals", deal["id"], {"dealstage": "closedwon"})
            await s.eventually(lambda: s.pd.records("deals")[0]["status"] == "won")
            s.pd.update_record("deals", s.pd.records("deals")[0]["id"],
                               {"stage_id": stages["Qualified"], "status": "open"})
            await s.eventually(lambda: s.hub.records("deals")[0]["properties"]["dealstage"]
                               == "qualifiedtobuy")


async def test_sigkill_mid_initial_sync_loses_and_duplicates_nothing(tmp_path):
    with trio.fail_after(300):
        async with pd_system(tmp_path) as s:
            n = 600
            s.pd.seed({"persons": [_person(f"p{i}@example.com", f"Per Son{i}")
                                   for i in range(n)]})
            s.hub.add_records("contacts", [{"email": f"h{i}@example.com", "firstname": "H"}
                                           for i in range(n // 2)]
                              + [{"email": f"p{i}@example.com", "lastname": "Both"}
                                 for i in range(0, n, 3)])
            s.write_config(CONTACTS.format(extra=""))
            await s.start_daemon()
            assert s.daemon is not None
            # Kill it once writes are under way in both directions.
            await s.eventually(lambda: len(s.hub.records("contacts")) > n // 2 + n // 3 + 50
                               and len(s.persons()) > n + 20, timeout=120, step=0.02)
            s.daemon.signal(signal.SIGKILL)
            await s.daemon.wait()
            await s.start_daemon()
            await s.wait_synced("contacts", timeout=180)
            hub = s.hub.records("contacts")
            persons = s.persons()
            emails_hub = [str(r["properties"]["email"]).lower() for r in hub]
            emails_pd = [p["emails"][0]["value"].lower() for p in persons]
            assert len(emails_hub) == len(set(emails_hub)) == n + n // 2
            assert len(emails_pd) == len(set(emails_pd)) == n + n // 2
            both = s.contacts_by_email()
            assert all(both[f"p{i}@example.com"]["properties"].get("lastname") == "Both"
                       for i in range(0, n, 3))


async def test_daily_budget_spent_mid_initial_sync_pauses_and_resumes_losing_nothing(tmp_path):
    """Pipedrive's daily token budget runs out during the initial sync: the connection pauses
    with that reason (ctl status shows the tokens used today and the reset), calls stop, and
    once Pipedrive's day begins again everything is synced, nothing twice."""
    with trio.fail_after(300):
        async with pd_system(tmp_path, plan="essential") as s:
            n_pd, n_hub = 40, 160
            s.pd.seed({"persons": [_person(f"p{i}@example.com", f"Per Son{i}")
                                   for i in range(n_pd)]})
            s.hub.add_records("contacts", [{"email": f"h{i}@example.com", "firstname": "H",
                                            "lastname": f"Hub{i}"} for i in range(n_hub)])
            # 400 tokens left today: the 160 creates (5 tokens each) cannot all go.
            budget = 30_000
            s.pd.rate_limiter.set_tokens_used(budget - 400, s.pd.clock.now_ms())
            s.write_config(CONTACTS.format(extra=""),
                           connection_extra="budget_probe_interval_seconds = 1")
            await s.start_daemon()
            assert s.daemon is not None
            paused = await s.daemon.wait_for_event("connection paused", timeout=120)
            assert "daily Pipedrive token budget is spent" in paused[0]["reason"]
            st = await ctl_json(s, "status")
            (conn,) = st["connections"]
            assert conn["state"] == "paused" and "daily" in conn["reason"]
            b = conn["budget"]
            assert b["unit"] == "tokens" and b["daily_limit"] == budget
            assert b["daily_used"] >= budget - 5 and b["resets_at"] > st["now"]
            text = " ".join((await run_cli(s, "ctl", "status")).split())
            assert "paused: the daily Pipedrive token budget is spent" in text
            assert re.search(r"rate budget: \d+/20 per 2 s, today \d{2},\d{3}/30,000 tokens, "
                             r"(blocked for [\d.]+ s, )?resets \d\d:\d\d UTC", text), text
            # Nothing more is sent while it waits (a probe refused costs no token).
            used = s.pd.tokens_used_today()
            assert used <= budget
            created_before = len(s.persons())
            assert n_pd < created_before < n_pd + n_hub
            # Pipedrive's day begins again.
            s.pd.rate_limiter.set_tokens_used(0, s.pd.clock.now_ms())
            await s.eventually(lambda: len(s.persons()) == n_pd + n_hub
                               and len(s.hub.records("contacts")) == n_pd + n_hub,
                               timeout=200, step=0.5)
            emails = [p["emails"][0]["value"] for p in s.persons()]
            assert len(set(emails)) == len(emails)
            await s.eventually(lambda: not s.items("contacts", "failed"), timeout=120)


async def test_webhooks_registered_and_removed_through_ctl(tmp_path):
    with trio.fail_after(120):
        async with pd_system(tmp_path) as s:
            (pid,) = s.pd.add_records("persons", [_person("w@example.com", "Web Hook")])
            s.write_config(CONTACTS.format(extra=""), poll_interval=3600,
                           webhooks_extra='register = "manual"')
            await s.start_daemon()
            await s.wait_synced("contacts")
            assert s.pd.webhooks.hooks == {}
            listed = await ctl_json(s, "webhooks", "list", "pd")
            assert listed["webhooks"] == []
            made = await ctl_json(s, "webhooks", "register", "pd")
            assert sorted(w["entity"] for w in made["webhooks"]) == [
                "deal", "organization", "person"]
            url = f"http://127.0.0.1:{s.hook_port}/webhooks/pd"
            assert {h.subscription_url for h in s.pd.webhooks.hooks.values()} == {url}
            s.pd.update_record("persons", pid, {"first_name": "Hooked"})
            await s.eventually(lambda: s.contacts_by_email()["w@example.com"]["properties"]
                               .get("firstname") == "Hooked")
            gone = await ctl_json(s, "webhooks", "remove", "pd")
            assert len(gone["webhooks"]) == 3 and s.pd.webhooks.hooks == {}
            # `crmsync app uninstall` removes what crmsync keeps in Pipedrive: its webhooks.
            await ctl_json(s, "webhooks", "register", "pd")
            assert s.daemon is not None
            s.daemon.signal(signal.SIGTERM)
            await s.daemon.wait()
            plan = await run_cli(s, "app", "uninstall", "pd")
            assert plan.count("\n  webhook ") == 3 and len(s.pd.webhooks.hooks) == 3
            done = await run_cli(s, "app", "uninstall", "pd", "--yes")
            assert done.count("\n  webhook ") == 3 and s.pd.webhooks.hooks == {}
