"""The app pass's look-up for one page: the store's reads, decided by the engine.

`engine.pairing.pair_app_page` holds the rules; these functions run inside one store call
(`store.read` / `store.call`) and only read and write what the rules need and decided.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from crmsync.engine.pairing import AppPairing, InFlight, pair_app_page
from crmsync.store import items as store_items
from crmsync.store.items import IndexRow, Item, Outcome

Pairing = AppPairing[Item, IndexRow]

__all__ = ["InFlight", "Pairing", "match_app_records", "pair_app_records"]


def match_app_records(conn: sqlite3.Connection, sync_id: str, rows: Sequence[IndexRow],
                      in_flight: InFlight | None = None) -> list[Pairing]:
    """Where each record of one app page stands (reads only; commit with the outcomes of
    its sync). See `engine.pairing.pair_app_page`."""
    existing = store_items.find_items(conn, sync_id, "app", [r.record_id for r in rows])
    all_keys = list({k for r in rows for k in r.keys})
    app_holders = store_items.key_holders(conn, sync_id, "app", all_keys) if all_keys else {}
    hub_holders = store_items.key_holders(conn, sync_id, "hub", all_keys) if all_keys else {}
    return pair_app_page(rows, existing, app_holders, hub_holders, in_flight)


def pair_app_records(conn: sqlite3.Connection, sync_id: str,
                     rows: Sequence[IndexRow]) -> list[Pairing]:
    """Look up and record one app page at once (pairs linked later by the outcomes of their
    sync): the app pass in one call for callers that do not need to write in between."""
    pairings = match_app_records(conn, sync_id, rows)
    outcomes = []
    for p in pairings:
        r = p.row
        if p.known and p.item is not None:
            if p.item.snapshot is not None:
                continue
            if p.duplicate_of is not None:
                outcomes.append(Outcome(item_id=p.item.item_id, state="failed",
                                        category="duplicate",
                                        detail=f"same match key as app record {p.duplicate_of}"))
            continue
        claim = tuple(("app", k, r.record_id) for k in r.keys) if p.duplicate_of is None else ()
        if r.excluded:
            outcomes.append(Outcome(state="excluded", category=r.excluded, detail=r.detail,
                                    app_id=r.record_id, app_version=r.version,
                                    match_key=r.keys[0] if r.keys else ""))
        elif p.duplicate_of is not None:
            outcomes.append(Outcome(state="failed", category="duplicate",
                                    detail=f"same match key as app record {p.duplicate_of}",
                                    app_id=r.record_id, app_version=r.version,
                                    match_key=r.keys[0] if r.keys else ""))
        elif p.item is not None:
            outcomes.append(Outcome(item_id=p.item.item_id, state="pending", app_id=r.record_id,
                                    app_version=r.version, claim=claim))
        else:
            outcomes.append(Outcome(state="pending", app_id=r.record_id, app_version=r.version,
                                    match_key=r.keys[0] if r.keys else "", claim=claim))
    store_items.apply_outcomes(conn, sync_id, outcomes)
    found = store_items.find_items(conn, sync_id, "app", [p.row.record_id for p in pairings])
    return [AppPairing(p.row, found.get(p.row.record_id), p.duplicate_of) for p in pairings]
