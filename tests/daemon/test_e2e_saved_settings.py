"""A saved change of an object sync's settings (issue 10 item 3).

The restarted initial sync re-decides every record: an excluded record is excluded again with
its reason (or synced, if the new settings include it), never left `pending`. A preview is for
a sync's first initial sync and for a save that changes what matches (keys, filters,
direction); while a preview waits, linked records keep syncing.
"""

from __future__ import annotations

import trio

from crmsync.control.ops import connections as connection_ops
from crmsync.control.ops import preview as preview_ops
from crmsync.runtime.object_sync import Timing

from .harness import contacts_sync, running

CUSTOMERS = [
    {"email": "c0@example.com", "first_name": "C0", "job_title": "CEO"},
    {"email": "c1@example.com", "first_name": "C1", "job_title": "CTO"},
    {"email": "not-an-email", "first_name": "Bad", "job_title": "CFO"},  # invalid_email
    {"email": "intern@example.com", "first_name": "Ivy", "job_title": "Intern"},  # filter
]
HUB = [{"email": "c0@example.com", "firstname": "C0"},
       {"firstname": "No", "lastname": "Email"}]  # no_email
FILTER = """
[[syncs.filters]]
side = "app"
property = "job_title"
operator = "NEQ"
value = "Intern"
"""
TIMING = Timing(hub_poll_interval=10_000, app_poll_interval=2)


def reasons(items) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for i in items:
        out.setdefault(i.state, []).append(i.category)
    return {k: sorted(v) for k, v in out.items()}


async def save(env, syncs: str) -> None:
    cfg = env.tmp / "crmsync.toml"
    text = cfg.read_text()
    start = text.index("[[syncs]]")
    cfg.write_text(text[:start] + syncs)
    assert (await connection_ops.reload(env.daemon)).changes == ["restarted shop"]


async def test_a_saved_change_decides_every_excluded_record_again(tmp_path, slow_autojump):
    async with running(tmp_path, syncs=contacts_sync(extra=FILTER), customers=CUSTOMERS,
                       hub_contacts=HUB, webhooks=False, timing=TIMING) as env:
        await env.wait_ready()
        before = reasons(await env.items())
        assert before == {"syncing": ["", ""],
                          "excluded": ["filter", "invalid_email", "no_email"]}

        await save(env, contacts_sync(winner="app", extra=FILTER))
        await env.wait_ready()
        assert reasons(await env.items()) == before
        assert (await env.counts())["pending"] == 0

        # A save that lets the filtered record in syncs it.
        await save(env, contacts_sync(winner="app"))
        await env.wait_ready()
        assert reasons(await env.items()) == {"syncing": ["", "", ""],
                                              "excluded": ["invalid_email", "no_email"]}
        assert "intern@example.com" in env.hub_by_email()


async def test_preview_comes_back_only_when_matching_changes_and_linked_records_sync(
        tmp_path, slow_autojump):
    def status(env):
        return env.daemon.connections["shop"].status.objects["contacts"]

    async with running(tmp_path, syncs=contacts_sync(preview=True, extra=FILTER),
                       customers=CUSTOMERS, hub_contacts=HUB, webhooks=False,
                       timing=TIMING) as env:
        await env.eventually(lambda: status(env).phase == "previewed")
        assert (await preview_ops.approve(env.daemon, "shop")).objects[0].approved
        await env.wait_ready()
        assert "c1@example.com" in env.hub_by_email()

        # The conflict winner changes nothing about what matches: no preview again.
        await save(env, contacts_sync(preview=True, winner="app", extra=FILTER))
        await env.wait_ready()
        assert status(env).phase == "complete" and not status(env).preview

        # A filter changes what matches: preview again; linked records keep syncing.
        await save(env, contacts_sync(preview=True, winner="app"))
        await env.eventually(lambda: status(env).phase == "previewed")
        env.app_exec("INSERT INTO customers (email, first_name) VALUES ('new@example.com', "
                     "'New')")
        env.app_exec("UPDATE customers SET first_name = 'Changed' WHERE email = "
                     "'c1@example.com'")
        await env.eventually(lambda: env.hub_by_email()["c1@example.com"]["properties"][
            "firstname"] == "Changed", timeout=120)
        # ... and nothing new is made before the approval, though the poll saw it.
        await trio.sleep(30)
        assert "intern@example.com" not in env.hub_by_email()
        assert "new@example.com" not in env.hub_by_email()
        assert status(env).phase == "previewed"
        assert (await preview_ops.approve(env.daemon, "shop")).objects[0].approved
        await env.wait_ready()
        await env.eventually(lambda: {"intern@example.com", "new@example.com"}
                             <= set(env.hub_by_email()), timeout=120)
        assert (await env.counts())["pending"] == 0
