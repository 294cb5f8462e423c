"""Conflicts crmsync cannot resolve after its state was restored from a backup.

A restored snapshot is as old as the backup. Suppose the hub changed a field after the backup,
crmsync copied it to the app (the snapshot that remembered it is lost), and then the app
changed the field again: against the restored snapshot the field has changed on both sides,
and the conflict winner would put the hub's older value back over the app's newer edit. The
same happens to two records paired for the first time when one of them is crmsync's own copy,
made after the backup, of the other one as it was then. From the records alone crmsync cannot
tell such a case from a true conflict, so it resolves neither: the record is held as `failed`
(`conflict_after_restore`) with both sides left as they are, until the two sides agree (an
operator corrects the wrong one).

What may be such a case: a decision that, because of a conflict or a first pairing
(`AMBIGUOUS`), writes over a value on a side whose record changed after the backup (a record
whose time is unknown counts as changed): that value may be an edit newer than the one that
would replace it. When the side written has not changed since the backup, its value is one the
backup's state already saw as unsynced, and the decision is the one the daemon would have made
then: it stands. A record once held stays held while any such value still differs.
"""

from __future__ import annotations

from crmsync.engine.types import Decision, Fail, Record

CATEGORY = "conflict_after_restore"

# Reasons of a value moved where the restored snapshot cannot tell which side is newer.
# (A one-way field's source wins by design, whatever happened: not among them.)
AMBIGUOUS = frozenset({"conflict_winner", "empty_winner", "first_pairing",
                       "first_pairing_empty"})


def _changed_since(rec: Record | None, since_ms: int) -> bool:
    return rec is not None and (rec.updated_at <= 0 or rec.updated_at >= since_ms)


def hold_ambiguous(decision: Decision, hub: Record | None, app: Record | None,
                   since_ms: int | None, held: bool = False) -> Decision:
    """`decision`, or a `Fail(conflict_after_restore)` in its place when it would settle a
    conflict that a restored state cannot judge.

    `since_ms`: while the object sync catches up after a restore, the backup's time (epoch
    ms, less a margin for clock skew); None otherwise. `held`: the record is held already.
    """
    moves = [c for c in decision.changes if c.reason in AMBIGUOUS]
    if not moves:
        return decision
    if not held:
        if since_ms is None:
            return decision
        if not any(_changed_since(hub if c.side == "hub" else app, since_ms) for c in moves):
            return decision
    fields = ", ".join(sorted({c.field for c in moves}))
    hub_id = hub.id if hub is not None else "-"
    app_id = app.id if app is not None else "-"
    return Decision(actions=[Fail(CATEGORY, (
        f"{fields} differ between hub {hub_id} and app {app_id}, and the side to be written "
        "changed after the backup crmsync was restored from: crmsync cannot tell which value "
        "is newer; correct the wrong side"))])
