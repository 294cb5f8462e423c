"""restore-deleted (preview, then apply: the record is back on the side it was deleted from,
relinked and syncing) and the review of parked deletes (approve / ignore), through
`crmsync ctl` against a running daemon."""

import trio

from crmsync.store import deletes as store_deletes

from ..daemon.harness import contacts_sync
from .ctl_env import CUSTOMERS, HUB, ctl_daemon, ctl_json, run_ctl, wait_for


async def deleted_count(env, n):
    return (await env.counts())["deleted"] == n


# Filters only decide a record's first inclusion: a restored record whose values no longer
# match them keeps syncing.
FILTERED = contacts_sync(extra="""
[[syncs.filters]]
side = "hub"
property = "lastname"
operator = "EQ"
value = "App"
""")


async def test_restore_deleted_on_the_app(tmp_path):
    with trio.fail_after(30):
        async with ctl_daemon(tmp_path, syncs=FILTERED, customers=CUSTOMERS,
                              hub_contacts=HUB) as c:
            env = c.env
            await env.wait_ready()
            hub_id = env.hub_by_email()["c3@example.com"]["id"]
            env.emu.update_record("contacts", hub_id, {"phone": "+1 555 0100"})
            await wait_for(lambda: env.app_by_email()["c3@example.com"]["phone"]
                           == "+1 555 0100")
            old_app_id = env.app_by_email()["c3@example.com"]["id"]
            env.app_exec("DELETE FROM customers WHERE email = 'c3@example.com'")
            await wait_for(lambda: deleted_count(env, 1))
            # Meanwhile the hub record changes: the restore takes its current values.
            env.emu.update_record("contacts", hub_id, {"lastname": "Current"})

            recs = await ctl_json(c, "records", "shop", "contacts", "--state", "deleted")
            (rec,) = recs["records"]
            assert (f"crmsync ctl restore-deleted shop contacts --to app --record {hub_id}"
                    in rec["hint"])

            preview = await ctl_json(c, "restore-deleted", "shop", "contacts", "--to", "app")
            assert preview["applied"] is False and preview["candidates"] == 1
            (row,) = preview["records"]
            assert row["restorable"] is True and row["hub_id"] == hub_id
            assert row["app_id"] == str(old_app_id) and row["source_id"] == hub_id
            assert row["values"]["email"] == "c3@example.com"
            assert row["values"]["last_name"] == "Current"
            assert row["values"]["phone"] == "+1 555 0100"
            assert "c3@example.com" not in env.app_by_email()  # nothing written yet
            code, out, _ = await run_ctl(c.socket, "restore-deleted", "shop", "contacts",
                                         "--to", "app")
            assert code == 0 and "would re-create" in out and "--yes" in out

            done = await ctl_json(c, "restore-deleted", "shop", "contacts", "--to", "app",
                                  "--yes")
            assert done["applied"] is True and done["restored"] == 1 and done["failed"] == 0
            (row,) = done["records"]
            assert row["outcome"] == "restored" and row["state"] == "syncing"
            back = env.app_by_email()["c3@example.com"]
            assert str(back["id"]) == row["new_id"] != str(old_app_id)
            assert back["last_name"] == "Current" and back["phone"] == "+1 555 0100"
            # Relinked: one item, both ids, syncing; and it keeps syncing.
            (item,) = [it for it in await env.items() if it.hub_id == hub_id]
            assert item.app_id == row["new_id"] and item.state == "syncing"
            assert item.snapshot is not None and item.deleted_side == ""
            assert await env.counts() == {"syncing": 5, "failed": 0, "excluded": 0,
                                          "queued": 0, "pending": 0, "deleted": 0}
            env.emu.update_record("contacts", hub_id, {"jobtitle": "Restored"})
            await wait_for(lambda: env.app_by_email()["c3@example.com"]["job_title"]
                           == "Restored")
            assert len(env.hub()) == 5 and len(env.app_rows()) == 5
            h = await ctl_json(c, "history", "shop", "contacts", "--record", hub_id)
            assert "restore" in [e["action"] for e in h["entries"]]
            again = await ctl_json(c, "restore-deleted", "shop", "contacts", "--to", "app")
            assert again["candidates"] == 0


async def test_restore_deleted_on_the_hub_one_record(tmp_path):
    with trio.fail_after(30):
        async with ctl_daemon(tmp_path, customers=CUSTOMERS, hub_contacts=HUB) as c:
            env = c.env
            await env.wait_ready()
            gone = env.hub_by_email()["c1@example.com"]["id"]
            other = env.hub_by_email()["c2@example.com"]["id"]
            env.emu.archive_record("contacts", gone)
            env.emu.archive_record("contacts", other)
            await wait_for(lambda: deleted_count(env, 2))
            # Not restorable: the wrong side, or not deleted.
            wrong = await ctl_json(c, "restore-deleted", "shop", "contacts", "--to", "app")
            assert wrong["candidates"] == 0
            live = env.hub_by_email()["c0@example.com"]["id"]
            no = await ctl_json(c, "restore-deleted", "shop", "contacts", "--to", "hub",
                                "--record", live, "--yes")
            assert no["restored"] == 0 and no["records"][0]["outcome"] == "skipped"
            assert "not deleted" in no["records"][0]["reason"]

            done = await ctl_json(c, "restore-deleted", "shop", "contacts", "--to", "hub",
                                  "--record", f"hub:{gone}", "--yes")
            assert done["restored"] == 1 and done["candidates"] == 1
            new_id = done["records"][0]["new_id"]
            assert new_id != gone
            assert env.hub_by_email()["c1@example.com"]["id"] == new_id
            assert "c2@example.com" not in env.hub_by_email()  # only the one asked for
            items = {it.app_id: it for it in await env.items()}
            app_id = str(env.app_by_email()["c1@example.com"]["id"])
            assert items[app_id].hub_id == new_id and items[app_id].state == "syncing"
            env.app_exec("UPDATE customers SET last_name = 'Again' "
                         "WHERE email = 'c1@example.com'")
            await wait_for(lambda: env.hub_by_email()["c1@example.com"]["properties"].get(
                "lastname") == "Again")
            assert (await env.counts())["deleted"] == 1


async def test_parked_deletes_approve_and_ignore(tmp_path):
    with trio.fail_after(30):
        async with ctl_daemon(tmp_path, syncs=contacts_sync(on_delete="review"),
                              customers=CUSTOMERS, hub_contacts=HUB) as c:
            env = c.env
            await env.wait_ready()
            c2_hub = env.hub_by_email()["c2@example.com"]["id"]
            c3_hub = env.hub_by_email()["c3@example.com"]["id"]
            c3_app = str(env.app_by_email()["c3@example.com"]["id"])
            env.app_exec("DELETE FROM customers WHERE email IN "
                         "('c2@example.com', 'c3@example.com')")

            async def parked():
                return len(await env.daemon.store.read(store_deletes.parked,
                                                       "shop/contacts")) == 2

            await wait_for(parked)
            listed = await ctl_json(c, "deletes", "shop", "contacts")
            assert listed["total"] == 2 and listed["on_delete"] == "review"
            row = next(x for x in listed["parked"] if x["hub_id"] == c3_hub)
            assert row["deleted_side"] == "app" and row["other_id"] == c3_hub
            assert row["app_id"] == c3_app and row["can_delete_other"] is True
            code, out, _ = await run_ctl(c.socket, "deletes", "list", "shop", "contacts")
            assert code == 0 and "waiting for review" in out
            recs = await ctl_json(c, "records", "shop", "contacts", "--state", "deleted")
            assert all("deletes approve|ignore" in r["hint"] for r in recs["records"])

            approved = await ctl_json(c, "deletes", "approve", "shop", "contacts", "--record",
                                      f"app:{c3_app}")
            (res,) = approved["results"]
            assert res["outcome"] == "deleted" and res["hub_id"] == c3_hub
            assert "c3@example.com" not in env.hub_by_email()  # deleted on the hub too
            ignored = await ctl_json(c, "deletes", "ignore", "shop", "contacts", "--all")
            (res,) = ignored["results"]
            assert res["outcome"] == "kept" and res["hub_id"] == c2_hub
            assert "c2@example.com" in env.hub_by_email()  # left alone
            assert (await ctl_json(c, "deletes", "shop", "contacts"))["parked"] == []
            items = {it.hub_id: it for it in await env.items(state="deleted")}
            assert items[c3_hub].deleted_side == "both"
            assert items[c2_hub].deleted_side == "app"
            nothing = await ctl_json(c, "deletes", "approve", "shop", "contacts", "--record",
                                     c2_hub, code=1)
            assert nothing["code"] == "not_found"
            # An ignored delete can be restored.
            back = await ctl_json(c, "restore-deleted", "shop", "contacts", "--to", "app",
                                  "--yes")
            assert back["restored"] == 1
            assert "c2@example.com" in env.app_by_email()


async def test_a_restore_holds_its_records_and_skips_a_stale_plan(tmp_path, monkeypatch):
    from crmsync.connectors.sqlite.connector import SqliteAppConnector
    from crmsync.store import reports

    with trio.fail_after(30):
        async with ctl_daemon(tmp_path, customers=CUSTOMERS, hub_contacts=HUB) as c:
            env = c.env
            await env.wait_ready()
            hub_id = env.hub_by_email()["c3@example.com"]["id"]
            env.app_exec("DELETE FROM customers WHERE email = 'c3@example.com'")
            await wait_for(lambda: deleted_count(env, 1))
            h = c.daemon.handle("shop", "contacts")
            assert h is not None and c.daemon.store is not None
            batch, _ = await c.daemon.store.read(reports.deleted_on, "shop/contacts", "app",
                                                 0, 10)
            plan = await h.plan_restore("app", batch)
            assert [p.source_id for p in plan] == [hub_id]

            # While the restore runs, a sync of the surviving hub record waits for it.
            old_app_id = plan[0].item.app_id
            seen_at_sync: list[str | None] = []
            restoring = trio.Event()
            original = SqliteAppConnector.create

            async def create(self, object_name, values, *args, **kwargs):
                restoring.set()
                await trio.sleep(0.3)
                return await original(self, object_name, values, *args, **kwargs)

            monkeypatch.setattr(SqliteAppConnector, "create", create)
            async with trio.open_nursery() as nursery:
                async def edit_hub():
                    await restoring.wait()
                    await h.resync([("hub", hub_id)])
                    (it,) = [it for it in await env.items() if it.hub_id == hub_id]
                    seen_at_sync.append(it.app_id)

                nursery.start_soon(edit_hub)
                (first,) = await h.apply_restore(plan)
            monkeypatch.setattr(SqliteAppConnector, "create", original)
            assert first.outcome == "restored" and first.new_id != old_app_id
            # The sync ran only after the restore committed the new id (held meanwhile).
            assert seen_at_sync == [first.new_id]

            # The same (now stale) plan again: skipped, no second record.
            (second,) = await h.apply_restore(plan)
            assert second.outcome == "skipped" and "changed since" in second.detail
            assert [r["email"] for r in env.app_rows()].count("c3@example.com") == 1
            (item,) = [it for it in await env.items() if it.hub_id == hub_id]
            assert item.app_id == first.new_id and item.state == "syncing"
