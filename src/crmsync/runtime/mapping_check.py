"""Before an object sync starts syncing, its mappings are checked against both sides'
`describe()` (engine/mapping_check.py): a mapping to a field that does not exist, a read-only
field it writes, or a type its transform cannot carry pauses this object sync — only this one;
the connection's other object syncs keep running — with the problems and their fixes as its
status (`crmsync ctl status`), logged once. Nothing is read or written meanwhile, so such a
mapping never turns into failed records.

A paused object sync checks again every `RECHECK_SECONDS` (a HubSpot property created
meanwhile is seen once the connector's property cache has expired, after at most ten
minutes) and when the daemon reloads its configuration (`crmsync ctl reload`, which also
restarts the connection, so that an app column added to the table is seen).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from crmsync.config.defaults import effective_mappings
from crmsync.engine.mapping_check import MappingProblem, check_mappings
from crmsync.runtime.context import ObjectSyncContext

RECHECK_SECONDS = 600.0


@dataclass(frozen=True)
class MappingCheck:
    """What checking an object sync's mappings needs beyond its context."""

    connector_type: str = "sqlite"
    sync_path: str = "$.syncs[?]"  # where the object sync is in the configuration file
    app_pipeline_field: str = "pipeline"
    app_stage_field: str = ""

    async def problems(self, ctx: ObjectSyncContext) -> list[MappingProblem]:
        """The object sync's mappings that do not fit what both sides describe now."""
        hub_info = await ctx.hub.describe(ctx.hub_object)
        app_info = await ctx.app.describe(ctx.app_object)
        sync = ctx.sync
        effective = effective_mappings(self.connector_type, sync.hub_object, sync.mappings,
                                       sync.use_default_mappings,
                                       [f.name for f in app_info.fields] or None)
        return check_mappings(sync, effective, {f.name: f for f in hub_info.fields},
                              {f.name: f for f in app_info.fields}, sync_path=self.sync_path,
                              app_pipeline_field=self.app_pipeline_field,
                              app_stage_field=self.app_stage_field)


async def wait_until_mappings_fit(ctx: ObjectSyncContext, check: MappingCheck,
                                  pause: Callable[[float], Awaitable[None]]) -> None:
    """Return once the object sync's mappings fit both sides; until then it is paused (its
    status says why), checking again after each `await pause(RECHECK_SECONDS)` (which may
    return earlier when asked to check at once)."""
    reported = ""
    while True:
        problems = await check.problems(ctx)
        if not problems:
            if reported:
                ctx.log.info("object sync resumes: its mappings fit both sides now")
                ctx.status.error = ""
            return
        text = "; ".join(str(p) for p in problems)
        ctx.status.phase = "paused"
        ctx.status.error = (f"paused, mappings do not fit: {text} (checked again every "
                            f"{RECHECK_SECONDS / 60:g} min and on `crmsync ctl reload`)")
        if text != reported:
            ctx.log.error("object sync paused: its mappings do not fit",
                          problems=[str(p) for p in problems],
                          hint="fix the configuration or the fields named, then "
                               "`crmsync ctl reload`")
            reported = text
        await pause(RECHECK_SECONDS)
