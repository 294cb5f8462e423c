"""`crmsync ctl` against a running daemon (emulator + SQLite app), each command with --json:
status, records, history, resync, poll-now, reload, disable / enable, delete-sync, and the
errors an operator meets (unknown names, a stopped connection, no daemon)."""

import json
import sqlite3

import trio

from crmsync.engine.categories import EXCLUDE_HINTS, FAIL_HINTS
from crmsync.store import connections as store_connections

from ..daemon.harness import contacts_sync
from .ctl_env import CUSTOMERS, HUB, ctl_daemon, ctl_json, run_ctl, wait_for

DUP = {"email": "c0@example.com", "first_name": "Dup", "last_name": "Licate"}
BAD = {"email": "not-an-email", "first_name": "Bad"}


async def test_status(tmp_path):
    with trio.fail_after(30):
        async with ctl_daemon(tmp_path, customers=[*CUSTOMERS, BAD], hub_contacts=HUB) as c:
            await c.env.wait_ready()
            st = await ctl_json(c, "status")
            assert st["op"] == "status" and st["version"] and st["pid"] > 0
            assert st["ready"] is True and st["uptime_seconds"] >= 0
            assert st["control_path"] == str(c.socket)
            assert st["rate_budget"]["daily_used"] > 0
            assert "window_used" in st["rate_budget"] and "window_limit" in st["rate_budget"]
            (conn,) = st["connections"]
            assert conn["name"] == "shop" and conn["state"] == "running"
            (obj,) = conn["objects"]
            assert obj["hub_object"] == "contacts" and obj["app_object"] == "customers"
            assert obj["phase"] == "complete" and obj["running"] is True
            assert obj["percent"] is None and obj["done"] == obj["total"] > 0
            assert obj["completed_at"] >= obj["started_at"] > 0
            assert obj["counts"] == {"syncing": 5, "excluded": 1, "failed": 0, "queued": 0,
                                     "pending": 0, "deleted": 0}
            assert obj["last_app_poll"] is not None and obj["queue"]["running"] >= 0
            assert (await ctl_json(c, "status", "shop"))["connections"][0]["name"] == "shop"
            err = await ctl_json(c, "status", "nope", code=1)
            assert err["op"] == "error" and err["code"] == "not_found"
            assert "shop" in err["message"]
            # Human output.
            code, out, _ = await run_ctl(c.socket, "status")
            assert code == 0 and "contacts ⇄ customers" in out and "in sync" in out
            assert (await ctl_json(c, "ping"))["op"] == "ping"


async def test_records_with_hints_and_paging(tmp_path):
    with trio.fail_after(30):
        async with ctl_daemon(tmp_path, customers=[*CUSTOMERS, DUP, BAD],
                              hub_contacts=HUB) as c:
            await c.env.wait_ready()
            failed = await ctl_json(c, "records", "shop", "contacts", "--state", "failed")
            (dup,) = failed["records"]
            assert dup["category"] == "duplicate" and dup["hint"] == FAIL_HINTS["duplicate"]
            assert dup["app_id"] and dup["hub_id"] is None and "same match key" in dup["detail"]
            assert dup["match_key"] == "email:c0@example.com" or dup["match_key"] == ""
            assert failed["total"] == 1 and failed["next_after"] is None
            # By the app object's name too.
            excluded = await ctl_json(c, "records", "shop", "customers", "--state", "excluded")
            (bad,) = excluded["records"]
            assert bad["category"] == "invalid_email"
            assert bad["hint"] == EXCLUDE_HINTS["invalid_email"]
            assert "not a valid email" in bad["detail"]
            page1 = await ctl_json(c, "records", "shop", "contacts", "--state", "syncing",
                                   "--limit", "3")
            assert len(page1["records"]) == 3 and page1["total"] == 5
            page2 = await ctl_json(c, "records", "shop", "contacts", "--state", "syncing",
                                   "--limit", "3", "--after", str(page1["next_after"]))
            assert len(page2["records"]) == 2 and page2["next_after"] is None
            ids = {r["hub_id"] for r in page1["records"] + page2["records"]}
            assert ids == {r["id"] for r in c.env.hub()}
            assert all(r["app_id"] and r["match_key"].startswith("email:")
                       for r in page1["records"])
            none = await ctl_json(c, "records", "shop", "contacts", "--state", "failed",
                                  "--category", "invalid_value")
            assert none["records"] == []
            err = await ctl_json(c, "records", "shop", "deals", "--state", "failed", code=1)
            assert err["code"] == "not_found"
            code, out, _ = await run_ctl(c.socket, "records", "shop", "contacts", "--state",
                                         "failed")
            assert code == 0 and "duplicate" in out and "merge it into" in out
            # Its failure is in its history: the app pass's duplicate decision. A resync
            # finds it a duplicate still (nothing is sent to the hub), recorded once.
            await ctl_json(c, "resync", "shop", "contacts", "--failed")
            h = await ctl_json(c, "history", "shop", "contacts", "--record",
                               f"app:{dup['app_id']}")
            assert [e["action"] for e in h["entries"]] == ["fail"]
            assert h["entries"][-1]["detail"] == "same match key as app record 1"
            # The duplicate, never linked, is deleted in the app: nothing to restore it from,
            # and the hint does not send the operator to restore-deleted.
            c.env.app_exec(f"DELETE FROM customers WHERE id = {dup['app_id']}")
            await wait_for(lambda: _deleted(c))
            (gone,) = (await ctl_json(c, "records", "shop", "contacts", "--state",
                                      "deleted"))["records"]
            assert gone["app_id"] == dup["app_id"] and "before it was linked" in gone["hint"]
            assert "restore-deleted" not in gone["hint"]


async def _deleted(c):
    return (await c.env.counts())["deleted"] == 1


async def test_history_shows_fields_winner_and_why(tmp_path):
    with trio.fail_after(30):
        async with ctl_daemon(tmp_path, customers=CUSTOMERS, hub_contacts=HUB) as c:
            env = c.env
            await env.wait_ready()
            hub_id = env.hub_by_email()["c1@example.com"]["id"]
            env.emu.update_record("contacts", hub_id, {"lastname": "Changed"})
            await wait_for(lambda: env.app_by_email()["c1@example.com"]["last_name"]
                           == "Changed")
            h = await ctl_json(c, "history", "shop", "contacts", "--record", hub_id)
            assert h["record"]["hub_id"] == hub_id and h["record"]["state"] == "syncing"
            newest = h["entries"][0]
            assert newest["action"] == "update"
            (change,) = newest["changes"]
            assert change == {"field": "lastname", "side": "app", "old": "App",
                              "new": "Changed", "winner": "hub", "reason": "one_sided_change",
                              "why": "changed on hub only since the last sync"}
            assert h["entries"][-1]["action"] == "link"
            app_id = h["record"]["app_id"]
            by_app = await ctl_json(c, "history", "shop", "customers", "--record",
                                    f"app:{app_id}")
            assert by_app["record"]["item_id"] == h["record"]["item_id"]
            err = await ctl_json(c, "history", "shop", "contacts", "--record", "999999", code=1)
            assert err["code"] == "not_found"
            code, out, _ = await run_ctl(c.socket, "history", "shop", "contacts", "--record",
                                         hub_id)
            assert code == 0 and "one_sided" not in out and "changed on hub only" in out


async def test_history_of_a_one_way_sync_names_the_direction_rule(tmp_path):
    # app -> hub only, with HubSpot as the configured conflict winner: the app's first name
    # still goes to the hub (the direction decides), and the history says so rather than
    # "app wins conflicts".
    customers = [{**CUSTOMERS[1], "first_name": "Cee"}]
    with trio.fail_after(30):
        async with ctl_daemon(tmp_path, syncs=contacts_sync(direction="to_hub", winner="hub"),
                              customers=customers, hub_contacts=HUB[1:2]) as c:
            env = c.env
            await env.wait_ready()
            hub_id = env.hub_by_email()["c1@example.com"]["id"]
            assert env.hub_by_email()["c1@example.com"]["properties"]["firstname"] == "Cee"
            h = await ctl_json(c, "history", "shop", "contacts", "--record", hub_id)
            changes = [ch for e in h["entries"] for ch in e["changes"]
                       if ch["field"] == "firstname"]
            assert [(ch["side"], ch["old"], ch["new"], ch["winner"], ch["reason"])
                    for ch in changes] == [("hub", "C1", "Cee", "app", "first_pairing_one_way")]
            why = changes[0]["why"]
            assert "wins conflicts" not in why
            assert "syncs one way, app → hub" in why and "direction rule" in why
            code, out, _ = await run_ctl(c.socket, "history", "shop", "contacts", "--record",
                                         hub_id)
            assert code == 0 and "direction rule" in " ".join(out.split())


async def test_resync_failed_and_one_record(tmp_path):
    with trio.fail_after(30):
        async with ctl_daemon(tmp_path, customers=[*CUSTOMERS, DUP], hub_contacts=HUB) as c:
            env = c.env
            await env.wait_ready()
            still = await ctl_json(c, "resync", "shop", "contacts", "--failed")
            (res,) = still["objects"]
            assert res["mode"] == "failed" and res["submitted"] == 1
            assert res["counts"]["failed"] == 1  # still a duplicate
            # Fix the duplicate in the app, and drop its change-log entry in the same
            # transaction: only the resync can bring it over.
            dup_id = next(r["id"] for r in env.app_rows() if r["first_name"] == "Dup")
            conn = sqlite3.connect(env.app_db)
            with conn:
                conn.execute("UPDATE customers SET email = 'dup@example.com' WHERE id = ?",
                             (dup_id,))
                assert conn.execute("DELETE FROM crmsync_changelog").rowcount > 0
            conn.close()
            await trio.sleep(0.5)  # polls pass: nothing to see
            assert "dup@example.com" not in env.hub_by_email()
            fixed = await ctl_json(c, "resync", "shop", "contacts", "--failed")
            assert fixed["objects"][0]["counts"]["failed"] == 0
            assert fixed["objects"][0]["counts"]["syncing"] == 6
            assert "dup@example.com" in env.hub_by_email()
            one = await ctl_json(c, "resync", "shop", "contacts", "--record", f"app:{dup_id}")
            assert one["objects"][0]["mode"] == "record"
            assert one["objects"][0]["records"][0]["state"] == "syncing"
            every = await ctl_json(c, "resync", "shop")
            assert every["objects"][0]["mode"] == "all" and every["objects"][0]["submitted"] > 0
            code, _, err = await run_ctl(c.socket, "resync", "shop", "--record", "1")
            assert code == 2 and "needs the OBJECT" in err


async def test_poll_now_and_reload(tmp_path):
    with trio.fail_after(30):
        async with ctl_daemon(tmp_path, customers=CUSTOMERS, hub_contacts=HUB) as c:
            env = c.env
            await env.wait_ready()
            polled = await ctl_json(c, "poll-now", "shop")
            # No index lag in this harness: nothing to warn about.
            assert polled == {"op": "poll_now", "connection": "shop", "objects": ["contacts"],
                              "hub_index_lag_seconds": 0.0, "hub_poll_interval_seconds": 300.0,
                              "message": "polling contacts now"}
            cfg = tmp_path / "crmsync.toml"
            good = cfg.read_text()
            cfg.write_text(good.replace('conflict_winner = "hub"', 'conflict_winner = "app"'))
            reloaded = await ctl_json(c, "reload")
            assert reloaded == {"op": "reload", "changes": ["restarted shop"]}
            cfg.write_text(good + "\n[[syncs]]\nconnection = 'nope'\n")
            err = await ctl_json(c, "reload", code=2)
            assert err["code"] == "config" and "nothing changed" in err["message"]
            await env.wait_ready()
            st = await ctl_json(c, "status")
            assert st["connections"][0]["state"] == "running"


async def test_poll_now_says_a_fresh_hub_change_waits_for_the_index_lag(tmp_path):
    # The connector never reads the last `search_index_lag_seconds` of changes: HubSpot's
    # search index lags behind writes (reference/hubspot-api.md §2: "Newly written records
    # show up after a short indexing delay"). So poll-now, which answers at once, cannot bring
    # a hub change made just before it: its reply says so.
    with trio.fail_after(30):
        async with ctl_daemon(tmp_path, customers=CUSTOMERS, hub_contacts=HUB,
                              hub_index_lag=30.0) as c:
            await c.env.wait_ready()
            polled = await ctl_json(c, "poll-now", "shop", "contacts")
            assert polled["hub_index_lag_seconds"] == 30.0
            assert polled["hub_poll_interval_seconds"] == 300.0
            msg = polled["message"]
            assert msg.startswith("polling contacts now")
            assert "made in the last 30 s is not seen by this poll" in msg
            assert "search_index_lag_seconds" in msg and "every 300 s" in msg
            code, out, _ = await run_ctl(c.socket, "poll-now", "shop")
            assert code == 0 and "made in the last 30 s is not seen by this poll" in \
                " ".join(out.split())


async def test_disable_and_enable(tmp_path):
    with trio.fail_after(30):
        async with ctl_daemon(tmp_path, customers=CUSTOMERS, hub_contacts=HUB) as c:
            env = c.env
            await env.wait_ready()
            off = await ctl_json(c, "disable", "shop", "--reason", "maintenance")
            assert off == {"op": "disable", "connection": "shop", "state": "disabled",
                           "reason": "maintenance", "changed": True,
                           "message": "disabled: its object syncs are stopped"}
            assert await env.daemon.store.read(store_connections.disabled) == {
                "shop": "maintenance"}
            again = await ctl_json(c, "disable", "shop")
            assert again["changed"] is False
            env.app_exec("UPDATE customers SET job_title = 'While off' "
                         "WHERE email = 'c2@example.com'")
            await trio.sleep(1.0)  # five app poll intervals: nothing moves
            assert env.hub_by_email()["c2@example.com"]["properties"].get("jobtitle") is None
            # A hub change's webhook is still accepted and kept, and status shows it waiting.
            c3 = env.hub_by_email()["c3@example.com"]["id"]
            env.emu.update_record("contacts", c3, {"lastname": "Hub While Off"})

            async def backlog() -> int:
                st = await ctl_json(c, "status")
                return int(st["connections"][0]["objects"][0]["webhook_backlog"])

            with trio.fail_after(10):
                while await backlog() == 0:
                    await trio.sleep(0.05)
            code, out, _ = await run_ctl(c.socket, "status")
            assert code == 0 and "webhook event(s) waiting" in out
            err = await ctl_json(c, "resync", "shop", "contacts", "--failed", code=1)
            assert err["code"] == "not_running" and "disabled" in err["message"]
            st = await ctl_json(c, "status")
            assert st["connections"][0]["state"] == "disabled"
            assert st["connections"][0]["reason"] == "maintenance"
            on = await ctl_json(c, "enable", "shop")
            assert on["changed"] is True and on["message"].startswith("enabled")
            assert await env.daemon.store.read(store_connections.disabled) == {}
            await wait_for(lambda: env.hub_by_email()["c2@example.com"]["properties"].get(
                "jobtitle") == "While off")
            await wait_for(lambda: env.app_by_email()["c3@example.com"]["last_name"]
                           == "Hub While Off")
            with trio.fail_after(10):
                while await backlog():
                    await trio.sleep(0.05)
            assert (await ctl_json(c, "enable", "shop"))["changed"] is False


async def test_delete_sync_forgets_crmsync_state_and_touches_neither_side(tmp_path):
    with trio.fail_after(30):
        async with ctl_daemon(tmp_path, customers=[*CUSTOMERS, DUP],
                              hub_contacts=HUB) as c:
            env = c.env
            await env.wait_ready()
            hub_before = sorted(json.dumps(r, sort_keys=True) for r in env.hub())
            app_before = env.app_rows()
            dry = await ctl_json(c, "delete-sync", "shop")
            assert dry["deleted"] is False
            (fp,) = dry["syncs"]
            assert fp["sync_id"] == "shop/contacts" and fp["rows"]["items"] == 6
            assert (await env.counts())["syncing"] == 5  # nothing dropped
            done = await ctl_json(c, "delete-sync", "shop", "--yes")
            assert done["deleted"] is True
            assert await env.counts() == dict.fromkeys(
                ["pending", "syncing", "failed", "excluded", "queued", "deleted"], 0)
            assert (await ctl_json(c, "delete-sync", "shop"))["syncs"][0]["rows"] == dict.fromkeys(
                fp["rows"], 0)
            st = await ctl_json(c, "status")
            assert st["connections"][0]["state"] == "disabled"
            assert "sync deleted" in st["connections"][0]["reason"]
            await trio.sleep(0.5)
            assert sorted(json.dumps(r, sort_keys=True) for r in env.hub()) == hub_before
            assert env.app_rows() == app_before


async def test_errors_for_the_operator(tmp_path):
    with trio.fail_after(30):
        code, out, err = await run_ctl(tmp_path / "missing.sock", "status")
        assert code == 3 and "cannot reach the daemon" in err and "is crmsync running" in err
        code, out, err = await run_ctl(tmp_path / "missing.sock", "status", "--json")
        assert code == 3 and out == ""
        async with ctl_daemon(tmp_path, customers=CUSTOMERS, hub_contacts=HUB) as c:
            await c.env.wait_ready()
            err = await ctl_json(c, "poll-now", "nope", code=1)
            assert err["code"] == "not_found"
            code, _, stderr = await run_ctl(c.socket, "deletes", "approve", "shop", "contacts")
            assert code == 2 and "--record ID or --all" in stderr
            code, _, stderr = await run_ctl(c.socket, "records", "shop", "nope", "--state",
                                            "failed")
            assert code == 1 and "no object sync 'nope'" in stderr
            # The socket found through the configuration file.
            code, out, _ = await run_ctl(None, "ping", "--json", "--config",
                                         str(tmp_path / "crmsync.toml"))
            assert code == 0 and json.loads(out)["op"] == "ping"
