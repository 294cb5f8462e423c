"""SIGKILL in the middle of association writes (issue 5): contacts and their companies are
synced with the contact ↔ company associations (a foreign key in the app); the daemon is
killed at seeded moments while it writes them, restarted, and in the end every association
is on both sides exactly once, no record is created twice, and nothing waits forever."""

import random
import signal

import pytest
import trio

from .harness import companies_sync, contacts_sync, make_app_db
from .procs import system

pytestmark = pytest.mark.slow

SCHEMA = """
CREATE TABLE organisations (
    id INTEGER PRIMARY KEY, name TEXT, domain TEXT, city TEXT, phone TEXT, industry TEXT,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')));
CREATE TABLE customers (
    id INTEGER PRIMARY KEY, email TEXT, first_name TEXT, last_name TEXT, phone TEXT,
    job_title TEXT, company_name TEXT, company_id INTEGER REFERENCES organisations(id),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')));
"""
ASSOC = """
[[connections.associations]]
from_object = "customers"
to_object = "organisations"
column = "company_id"
"""
N_ORGS, N_PEOPLE = 30, 150


def expected() -> dict[str, str]:
    """email -> company name, as the app says."""
    return {f"p{i}@example.com": f"Org{i % N_ORGS}" for i in range(N_PEOPLE)}


@pytest.mark.parametrize("seed", [3, 7])
async def test_sigkill_during_association_writes_converges(tmp_path, seed):
    rng = random.Random(seed)
    with trio.fail_after(240):
        async with system(tmp_path) as s:
            make_app_db(s.app_db, schema=SCHEMA,
                        organisations=[{"name": f"Org{i}", "domain": f"org{i}.example"}
                                       for i in range(N_ORGS)],
                        customers=[{"email": f"p{i}@example.com", "first_name": f"P{i}",
                                    "company_id": 1 + i % N_ORGS} for i in range(N_PEOPLE)])
            s.write_config(syncs=contacts_sync(extra='associations = ["companies"]\n')
                           + companies_sync(), connection_extra=ASSOC)
            await s.start_emulator()
            # A hub contact with a hub company: the association must reach the app too.
            (hub_org,) = (await s.hub.post("/_emulator/seed", json={
                "companies": [{"name": "HubCo", "domain": "hubco.example"}]})).json()[
                "companies"]
            (hub_person,) = await s.seed_hub([{"email": "hubperson@example.com"}])
            r = await s.hub.put(
                f"/crm/v4/objects/contacts/{hub_person}/associations/default/companies/{hub_org}",
                headers=s._auth())
            assert r.status_code in (200, 201), r.text

            for _ in range(3):
                d = await s.start_daemon()
                await d.wait_for_event("crmsync running", timeout=30)
                # Kill once association writes are under way (or at a random moment after).
                with trio.move_on_after(rng.uniform(0.3, 2.5)):
                    await d.wait_for_event("associations synced", timeout=30)
                await trio.sleep(rng.uniform(0, 0.3))
                d.kill()
                await d.wait(10)

            d = await s.start_daemon()
            await d.wait_for_event("crmsync running", timeout=30)

            async def hub_state() -> dict[str, list[str]]:
                dump = (await s.hub.get("/_emulator/dump")).json()
                names = {c["id"]: c["properties"].get("name")
                         for c in dump["objects"]["companies"] if not c["archived"]}
                out = {}
                for email, rec in (await s.hub_by_email()).items():
                    r = await s.hub.get(f"/crm/v4/objects/contacts/{rec['id']}/associations/"
                                        "companies", headers=s._auth())
                    out[email] = sorted(names.get(str(x["toObjectId"]), str(x["toObjectId"]))
                                        for x in r.json().get("results", []))
                return out

            want = expected()
            with trio.fail_after(120):
                while True:
                    hub = await hub_state()
                    orgs = {r[0]: r[1] for r in s.app_conn().execute(
                        "SELECT id, name FROM organisations")}
                    app = {r["email"]: orgs.get(r["company_id"]) for r in s.app_rows()}
                    done = (all(hub.get(e) == [c] for e, c in want.items())
                            and hub.get("hubperson@example.com") == ["HubCo"]
                            and app.get("hubperson@example.com") == "HubCo")
                    if done:
                        break
                    await trio.sleep(1)

            # Nothing created twice on either side, nothing left waiting.
            hub_emails = [e for e in (await s.hub_by_email())]
            assert len(hub_emails) == N_PEOPLE + 1
            assert sorted(r["email"] for r in s.app_rows()) == sorted(
                [*want, "hubperson@example.com"])
            org_names = [r[0] for r in s.app_conn().execute("SELECT name FROM organisations")]
            assert len(org_names) == len(set(org_names)) == N_ORGS + 1
            pending = s.state_rows("SELECT count(*) FROM pending_associations")[0][0]
            assert pending == 0
            d.signal(signal.SIGTERM)
            assert await d.wait(20) == 0
            assert s.state_rows("PRAGMA integrity_check")[0][0] == "ok"
