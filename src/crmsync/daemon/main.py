"""The daemon: config -> store -> hub connector -> webhook server, control server and one
supervisor per connection, in one Trio nursery.

SIGTERM / SIGINT stop it gracefully within `daemon.shutdown_grace_seconds`; SIGHUP reloads the
configuration (connections whose settings changed restart; an object sync whose settings
changed restarts its initial sync, through its config hash).
"""

from __future__ import annotations

import dataclasses
import gc
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import msgspec
import structlog
import trio

from crmsync import __version__
from crmsync.config import ConfigError, Problem, load_config
from crmsync.config.model import Config, Connection, ObjectSync
from crmsync.config.secrets import Secret, SecretError, read_secret
from crmsync.connectors.app_webhooks import AppReceiver, decode_inbox_payload
from crmsync.connectors.base import (
    Connector,
    ConnectorError,
    SupportsChangeNotifications,
    SupportsIdCheck,
    SupportsRateBudget,
)
from crmsync.connectors.hubspot.build import USER_AGENT, build_hub_connector
from crmsync.connectors.hubspot.client_credentials import ClientCredentialsAuth
from crmsync.connectors.hubspot.journal import JournalClient, account_portal_id
from crmsync.connectors.hubspot.webhooks import valid_object_id
from crmsync.connectors.ratelimit import RateBudget, RateBudgetStatistics
from crmsync.connectors.registry import (
    AppConnectorEnv,
    app_connector_secrets,
    open_app_connector,
    webhook_receiver,
)
from crmsync.daemon import logging as daemon_logging
from crmsync.daemon import notifications
from crmsync.daemon.housekeeping import run_housekeeping
from crmsync.daemon.hub_tokens import app_account_key, refresh_token_keeper
from crmsync.daemon.journal_reader import JournalIntake, JournalReader, JournalRoutes, JournalStats
from crmsync.daemon.sd_notify import Notifier, feed_watchdog, watchdog_interval
from crmsync.daemon.webhook_server import WebhookRoutes, WebhookServer, decode_hub_event
from crmsync.records import Side
from crmsync.runtime.associations import (
    ASSOCIATION_WAIT,
    AssociationLocks,
    AssociationSyncer,
    association_pairs,
)
from crmsync.runtime.connection import ConnectionHandle
from crmsync.runtime.context import ObjectSyncContext, sync_id_of
from crmsync.runtime.initial_order import InitialOrder, earlier
from crmsync.runtime.intake import Reported
from crmsync.runtime.mapping_check import MappingCheck
from crmsync.runtime.object_sync import (
    IntakeSource,
    ObjectSyncHandle,
    ObjectSyncSetup,
    Timing,
    run_object_sync,
)
from crmsync.runtime.status import ConnectionStatus, ObjectStatus
from crmsync.runtime.supervisor import Supervisor
from crmsync.store import Store, StoreError
from crmsync.store import connections as store_connections
from crmsync.store import tokens as store_tokens
from crmsync.store.inbox import app_source, hub_source

log = structlog.get_logger("crmsync.daemon")


def parse_hub_payload(payload: bytes) -> list[tuple[Side, str]]:
    """The hub records an inbox event names. Raises for a payload that is not a HubSpot
    event naming HubSpot record ids (one stored before intake validated them)."""
    e = decode_hub_event(payload)
    keys: list[tuple[Side, str]] = [("hub", e.object_id)]
    keys.extend(("hub", m) for m in e.merged_ids if m != e.object_id)
    bad = next((rid for _, rid in keys if not valid_object_id(rid)), None)
    if bad is not None:
        raise ValueError(f"{bad[:40]!r} is not a HubSpot record id")
    return keys


def describe_hub_payload(payload: bytes) -> tuple[int, str | None, str | None]:
    e = decode_hub_event(payload)
    if e.change != "propertyChange":
        return e.occurred_at, None, None
    return e.occurred_at, e.property_name, e.value_digest


# HubSpot's association type names (webhook `associationType`, e.g. CONTACT_TO_COMPANY) by
# the partner's end, as API object names (fact sheet §8.2).
_ASSOCIATION_ENDS = {"CONTACT": "contacts", "COMPANY": "companies", "DEAL": "deals",
                     "LINE_ITEM": "line_items", "INVOICE": "invoices"}


def report_hub_payload(payload: bytes) -> Reported | None:
    """What a HubSpot event says changed, for the intake to tell echoes of our own writes."""
    e = decode_hub_event(payload)
    if e.change == "creation":
        return Reported("creation", e.object_id)
    if e.change == "propertyChange" and e.property_name:
        return Reported("propertyChange", e.object_id, e.property_name, e.value_digest)
    if e.change == "associationChange" and e.association_type and e.to_object_id:
        _, sep, to = e.association_type.partition("_TO_")
        partner = _ASSOCIATION_ENDS.get(to) if sep else None
        if partner is not None:
            return Reported("associationChange", e.object_id, partner_object=partner,
                            partner_id=e.to_object_id, removed=bool(e.association_removed))
    return None


def parse_app_payload(payload: bytes) -> list[tuple[Side, str]]:
    """The app record an inbox event names (raises for a payload that is not one)."""
    return [("app", decode_inbox_payload(payload).record_id)]


def _secret(env: str | None, file: str | None, base_dir: Path) -> Secret | None:
    if not env and not file:
        return None
    return read_secret(env, file, base_dir)


def _stage_fields(app: Connector, conn: Connection, app_object: str) -> tuple[str, str]:
    """The app fields holding a deal's pipeline and stage: the connector says (Pipedrive),
    else the table's configured columns (SQLite, PostgreSQL)."""
    own = getattr(app, "stage_fields", None)
    if own is not None:
        fields: tuple[str, str] = own(app_object)
        return fields
    table = next((t for t in getattr(conn, "tables", ()) if t.object == app_object), None)
    return ((table.pipeline_column if table and table.pipeline_column else "pipeline"),
            table.stage_column if table else "")


def _association_pairs(app: Connector, conn: Connection) -> set[tuple[str, str]]:
    """The associations the app keeps, as (from object, to object): the connector says
    (Pipedrive's foreign keys), else the configured ones."""
    own = getattr(app, "association_pairs", None)
    if own is not None:
        return set(own())
    return {(a.from_object, a.to_object) for a in getattr(conn, "associations", ())}


def _association_keys(app: Connector, conn: Connection) -> set[tuple[str, str]]:
    """The app's associations (from object, to object) whose `from` record holds one
    partner: the connector's own (Pipedrive's foreign keys), else the configured ones kept
    in a foreign key column (not a join table)."""
    own = getattr(app, "association_pairs", None)
    if own is not None:
        return set(own())
    return {(a.from_object, a.to_object) for a in getattr(conn, "associations", ())
            if getattr(a, "column", None)}


@dataclass
class ConnectionRuntime:
    settings: Connection
    syncs: list[ObjectSync]
    status: ConnectionStatus
    # Its supervisor's handle, once started (a disabled connection has none).
    handle: ConnectionHandle | None = None
    scope: trio.CancelScope | None = None
    # Handed to every connector opened for the connection; outlives its restarts.
    env: AppConnectorEnv = field(default_factory=AppConnectorEnv)
    app: Connector | None = None  # the open app connector, while the connection runs

    def fingerprint(self) -> bytes:
        return msgspec.json.encode([self.settings, self.syncs])

    def sources(self) -> list[str]:
        """The inbox sources its object syncs read (hub and app webhooks)."""
        return [src(self.settings.name, s.hub_object) for s in self.syncs
                for src in (hub_source, app_source)]


class Daemon:
    """Owns the running state; `run()` is the root task.

    Constructing it reads the configuration and its secrets (blocking, bounded): `crmsync run`
    does it before the event loop starts; a reload reads them in a worker thread. Raises
    ConfigError with every problem; `run()` raises ConfigError (possibly inside an exception
    group) for what only starting reveals (an address in use, a state directory that cannot
    be made, a control socket path taken).
    """

    def __init__(self, config_path: str | Path, *, hub_transport: httpx.AsyncBaseTransport | None
                 = None, timing: Timing | None = None, notifier: Notifier | None = None,
                 configure_logging: bool = True, hub_index_lag: float | None = None,
                 app_transports: dict[str, httpx.AsyncBaseTransport] | None = None,
                 wall_clock: Callable[[], float] = time.time,
                 hub_events: bool | None = None) -> None:
        self.config_path = Path(config_path)
        self.base_dir = self.config_path.resolve().parent
        cfg, warnings = load_config(self.config_path)
        self.cfg: Config = cfg
        self.warnings = warnings
        self.hub_transport = hub_transport
        # Connection name -> a transport under the app connector's HTTP client (tests).
        self.app_transports = dict(app_transports or {})
        self.timing_override = timing
        self.notifier = notifier or Notifier()
        self.configure_logging = configure_logging
        # How far behind "now" the hub's search index may lag (see the hub connector).
        self.hub_index_lag = (hub_index_lag if hub_index_lag is not None
                              else cfg.hub.search_index_lag_seconds)
        # Whether HubSpot's property-change events reach the syncs; None: as the configuration
        # says (`_hub_events`). Tests that deliver the emulator's webhooks to the webhook
        # application in process, without its listener, say so.
        self.hub_events_override = hub_events
        self.started_at = time.time()
        self.store: Store | None = None
        self.hub: Connector | None = None
        self.connections: dict[str, ConnectionRuntime] = {}
        self.webhooks: WebhookServer | None = None
        # Record-id checks of the open app connectors, by connection (webhook intake).
        self.app_id_checks: dict[str, Callable[[str, str], str | None]] = {}
        self.routes = WebhookRoutes()
        self.ready = trio.Event()
        self.stopping = trio.Event()
        self.nursery: trio.Nursery | None = None
        self.control_path: str | None = None
        # The webhooks journal (hub.changes = "journal"); the wall clock of its retention.
        self.wall_clock = wall_clock
        self.journal: JournalIntake | None = None
        self._journal_scope: trio.CancelScope | None = None

    # --- configuration ----------------------------------------------------------------------

    @property
    def state_dir(self) -> Path:
        return Path(self.cfg.daemon.state_dir)

    def timing(self) -> Timing:
        if self.timing_override is not None:
            return self.timing_override
        return Timing(hub_poll_interval=self.cfg.hub.poll_interval_seconds,
                      reconcile_interval=self.cfg.hub.reconcile_interval_seconds)

    def _read_routes(self, cfg: Config) -> WebhookRoutes:
        """The webhook routes and secrets of `cfg`. Reads secret files: blocking, so it runs
        in a worker thread (see `_routes`)."""
        hub: dict[str, list[str]] = {}
        apps: dict[str, dict[str, list[str]]] = {}
        receivers: dict[str, AppReceiver] = {}
        for conn in cfg.connections:
            receiver = webhook_receiver(conn, self.base_dir)
            if receiver is not None:
                receivers[conn.name] = receiver
        for s in cfg.syncs:
            if not s.enabled:
                continue
            hub.setdefault(s.hub_object, []).append(hub_source(s.connection, s.hub_object))
            apps.setdefault(s.connection, {}).setdefault(s.app_object, []).append(
                app_source(s.connection, s.hub_object))
        # HubSpot's deliveries are accepted only when they are how its changes arrive.
        hub_secret = (_secret(cfg.hub.webhook_client_secret_env,
                              cfg.hub.webhook_client_secret_file, self.base_dir)
                      if cfg.hub.changes == "webhooks" else None)
        return WebhookRoutes(hub=hub, apps=apps, app_receivers=receivers, hub_secret=hub_secret,
                             app_ids=self.app_id_checks)

    async def _routes(self, cfg: Config) -> WebhookRoutes:
        """`cfg`'s webhook routes, their secrets read off the event loop and registered for
        redaction (on the loop: the log processors read that registry)."""
        routes = await trio.to_thread.run_sync(self._read_routes, cfg)
        values = [v for r in routes.app_receivers.values() for v in r.secret_values()]
        if routes.hub_secret is not None:
            values.append(routes.hub_secret.reveal())
        for value in values:
            daemon_logging.register_secret(value)
        return routes

    # --- the hub ----------------------------------------------------------------------------

    async def _open_hub(self, store: Store) -> Connector:
        keeper = await refresh_token_keeper(self.cfg.hub, self.base_dir, store,
                                            daemon_logging.register_secret)
        refresh = keeper.initial if keeper else None
        save_refresh = keeper.save if keeper else None
        reload_refresh = keeper.reload if keeper else None
        auth = self.cfg.hub.auth

        def read_hub_secrets() -> list[Secret]:
            found = []
            for env, file in (("token_env", "token_file"),
                              ("client_secret_env", "client_secret_file"),
                              ("refresh_token_env", "refresh_token_file")):
                if hasattr(auth, env):
                    try:
                        s = _secret(getattr(auth, env), getattr(auth, file), self.base_dir)
                    except SecretError:
                        s = None
                    if s is not None:
                        found.append(s)
            return found

        for s in await trio.to_thread.run_sync(read_hub_secrets):
            daemon_logging.register_secret(s.reveal())
        return build_hub_connector(self.cfg.hub, self.base_dir, transport=self.hub_transport,
                                   refresh_token=refresh, on_refresh_token=save_refresh,
                                   reload_refresh_token=reload_refresh,
                                   index_lag=self.hub_index_lag)

    def _hub_events(self) -> bool:
        """Whether HubSpot's property-change events reach the object syncs: through the
        journal, or through webhooks the daemon serves (else the poller alone finds changes,
        and it cannot tell which property changed when)."""
        if self.hub_events_override is not None:
            return self.hub_events_override
        changes = self.cfg.hub.changes
        return changes == "journal" or (changes == "webhooks"
                                        and self.cfg.daemon.webhooks.enabled)

    # --- the webhooks journal ------------------------------------------------------------------

    def _journal_routes(self) -> JournalRoutes:
        """What the journal feeds, from the current configuration."""
        routes = JournalRoutes(sources={obj: list(srcs) for obj, srcs in self.routes.hub.items()})
        for s in self.cfg.syncs:
            if not s.enabled:
                continue
            routes.syncs.setdefault(s.hub_object, []).append(f"{s.connection}/{s.hub_object}")
            if s.associations:
                routes.associations.add(s.hub_object)
                routes.associations.update(s.associations)
        return routes

    def _reconcile_now(self, sync_ids: list[str]) -> None:
        for sid in sync_ids:
            connection, _, hub_object = sid.partition("/")
            h = self.handle(connection, hub_object)
            if h is not None:
                h.reconcile_now()

    @asynccontextmanager
    async def _open_journal_reader(self, stats: JournalStats) -> AsyncIterator[JournalReader]:
        """A journal reader for `[hub.journal]` and its HTTP client, for one attempt of the
        supervising `JournalIntake` (the secret is read again each time: a fix needs no
        restart)."""
        assert self.store is not None and self.journal is not None
        settings = self.cfg.hub.journal
        if settings is None:
            raise ConnectorError("config", "internal", 'hub.changes = "journal" needs [hub.journal]')
        try:
            secret = await trio.to_thread.run_sync(
                read_secret, settings.client_secret_env, settings.client_secret_file,
                self.base_dir)
        except SecretError as exc:
            raise ConnectorError("config", "permission_denied",
                                 f"hub.journal client secret: {exc}") from None
        daemon_logging.register_secret(secret.reveal())
        auth = ClientCredentialsAuth(client_id=settings.client_id, client_secret=secret,
                                     scopes=settings.scopes)
        self.journal.auth = auth
        timeout = settings.request_timeout_seconds
        async with httpx.AsyncClient(
                base_url=self.cfg.hub.base_url, auth=auth,
                timeout=httpx.Timeout(timeout, connect=min(10.0, timeout)),
                limits=httpx.Limits(max_connections=4, max_keepalive_connections=4,
                                    keepalive_expiry=30.0),
                headers={"User-Agent": USER_AGENT}, transport=self.hub_transport,
                follow_redirects=False) as client:
            portal_id = settings.portal_id
            if not portal_id:
                http = getattr(self.hub, "http", None)
                if http is None:
                    raise ConnectorError("config", "internal", "set hub.journal.portal_id")
                try:
                    portal_id = await account_portal_id(http)
                except ConnectorError as exc:
                    if exc.kind != "config":
                        raise
                    raise ConnectorError(exc.kind, exc.category,
                                         f"the account id could not be asked from HubSpot "
                                         f"({exc.message}): set hub.journal.portal_id "
                                         "(the Hub ID)") from None
            journal = JournalClient(client, portal_id=portal_id,
                                    max_file_bytes=settings.max_file_bytes,
                                    request_timeout=timeout)
            yield JournalReader(journal, self.store, self._journal_routes,
                                poll_interval=settings.poll_interval_seconds,
                                batch_size=settings.batch_size, on_stored=self.intake_stored,
                                on_gap=self._reconcile_now, wall_clock=self.wall_clock,
                                stats=stats)

    async def _run_journal(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                           ) -> None:
        self.journal = JournalIntake(self._open_journal_reader)
        with trio.CancelScope() as scope:
            self._journal_scope = scope
            await self.journal.run(task_status=task_status)

    async def _restart_journal(self) -> None:
        assert self.nursery is not None
        if self._journal_scope is not None:
            self._journal_scope.cancel()
            self._journal_scope = None
        self.journal = None
        if self.cfg.hub.changes == "journal":
            await self.nursery.start(self._run_journal)

    # --- connections ------------------------------------------------------------------------

    def _runtime_for(self, conn: Connection) -> ConnectionRuntime:
        syncs = [s for s in self.cfg.syncs if s.connection == conn.name and s.enabled]
        status = ConnectionStatus(conn.name, conn.connector_type)
        for s in syncs:
            status.objects[s.hub_object] = ObjectStatus(s.hub_object, s.app_object, s.direction)
        return ConnectionRuntime(conn, syncs, status)

    def _webhook_url(self, conn: Connection) -> str:
        """Where the app should deliver this connection's webhooks, for connectors that
        register them: their own setting, else the public base URL + /webhooks/<name>."""
        own = getattr(getattr(conn, "webhooks", None), "url", "")
        base = self.cfg.daemon.webhooks.public_base_url.rstrip("/")
        return own or (f"{base}/webhooks/{conn.name}" if base else "")

    async def _notify_complete(self, ctx: ObjectSyncContext, counts: dict[str, int]) -> None:
        await notifications.send(self.cfg.daemon.notify, ctx.connection, ctx.hub_object,
                                 ctx.app_object, counts)

    def _supervisor(self, rt: ConnectionRuntime) -> Supervisor:
        assert self.store is not None and self.hub is not None
        store, hub = self.store, self.hub
        conn = rt.settings
        env = rt.env
        env.base_dir = self.base_dir
        env.transport = self.app_transports.get(conn.name)
        account = app_account_key(conn.name)

        async def save_refresh(token: str) -> None:
            daemon_logging.register_secret(token)
            await store.call(store_tokens.save_refresh_token, account, token)

        @asynccontextmanager
        async def open_app() -> AsyncIterator[Connector]:
            env.refresh_token = await store.read(store_tokens.get_refresh_token, account)
            if env.refresh_token:
                daemon_logging.register_secret(env.refresh_token)
            env.on_refresh_token = save_refresh
            env.webhook_url = self._webhook_url(conn)
            env.receiver = self.routes.app_receivers.get(conn.name)
            async with open_app_connector(conn, self.base_dir, env) as app:
                rt.app = app
                try:
                    if not isinstance(app, SupportsIdCheck):
                        yield app
                        return
                    # Webhook intake asks the open connector which record ids can exist.
                    check = app.id_problem
                    self.app_id_checks[conn.name] = check
                    try:
                        yield app
                    finally:
                        if self.app_id_checks.get(conn.name) == check:
                            del self.app_id_checks[conn.name]
                finally:
                    rt.app = None

        # The supervisor's handle (assigned below, before any of these functions runs).
        connection: ConnectionHandle
        # Shared by the object syncs at both ends of each association type.
        association_locks = AssociationLocks()
        # Their initial syncs in turn, where their objects keep associations.
        initial_order = InitialOrder()

        async def resubmit(hub_object: str, key: tuple[Side, str]) -> None:
            """A record of another object sync waits for a partner that just got linked: its
            sync runs only if that wait is still there when its turn comes."""
            h = connection.object_sync(hub_object)
            if h is not None:
                await h.resubmit([key], {key: [ASSOCIATION_WAIT]})

        async def run_children(app: Connector, nursery: trio.Nursery) -> None:
            if isinstance(app, SupportsChangeNotifications):
                await nursery.start(app.watch_changes, connection.app_changed)
            timing = dataclasses.replace(
                self.timing(),
                app_poll_interval=self.timing().app_poll_interval or conn.poll_interval_seconds)
            sweep = getattr(conn, "delete_sweep_interval_seconds", None)
            if sweep is not None:
                timing = dataclasses.replace(timing, delete_sweep_interval=sweep)
            app_pairs = _association_pairs(app, conn)
            app_keys = _association_keys(app, conn)
            directed = bool(getattr(app, "associations_directed", False))
            for s in rt.syncs:
                initial_order.expect(sync_id_of(conn.name, s.hub_object))
            for s in rt.syncs:
                pipeline_field, stage_field = _stage_fields(app, conn, s.app_object)
                pairs = association_pairs(self.cfg, s, app_pairs, directed=directed,
                                          app_keys=app_keys)
                keeps = pairs or any(s.hub_object in o.associations for o in rt.syncs)
                index = next((i for i, x in enumerate(self.cfg.syncs) if x == s), "?")
                setup = ObjectSyncSetup(
                    connection=conn.name, connector_type=conn.connector_type, sync=s,
                    timing=timing,
                    intakes=[IntakeSource(hub_source(conn.name, s.hub_object),
                                          parse_hub_payload, describe_hub_payload,
                                          report_hub_payload),
                             IntakeSource(app_source(conn.name, s.hub_object),
                                          parse_app_payload)],
                    notify=self._notify_complete,
                    mappings=MappingCheck(conn.connector_type, f"$.syncs[{index}]",
                                          app_pipeline_field=pipeline_field,
                                          app_stage_field=stage_field),
                    app_pipeline_field=pipeline_field, app_stage_field=stage_field,
                    associations=(partial(AssociationSyncer, pairs=pairs, resubmit=resubmit,
                                          locks=association_locks)
                                  if keeps else None),
                    hub_events=self._hub_events(),
                    initial_order=initial_order,
                    earlier_syncs=earlier(s.hub_object,
                                          [(p.hub_b, p.b_sync_id) for p in pairs]))
                handle = await nursery.start(run_object_sync, setup, store, hub, app,
                                             rt.status.objects[s.hub_object])
                connection.add(handle)

        supervisor = Supervisor(conn.name, rt.status, open_app, run_children)
        connection = supervisor.handle
        return supervisor

    async def _run_connection(self, rt: ConnectionRuntime, *,
                              task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                              ) -> None:
        assert self.store is not None
        with trio.CancelScope() as scope:
            rt.scope = scope
            disabled = await self.store.read(store_connections.disabled)
            if rt.settings.name in disabled:
                rt.status.set("disabled", disabled[rt.settings.name] or "disabled by operator")
                task_status.started()
                await trio.sleep_forever()
            supervisor = self._supervisor(rt)
            rt.handle = supervisor.handle
            async with trio.open_nursery() as nursery:
                await nursery.start(supervisor.run)
                task_status.started()

    async def start_connection(self, name: str) -> None:
        assert self.nursery is not None
        conn = next(c for c in self.cfg.connections if c.name == name)
        try:
            for value in app_connector_secrets(conn, self.base_dir):
                daemon_logging.register_secret(value)
        except ConnectorError:
            pass  # opening the connector reports it, as the connection's status
        rt = self._runtime_for(conn)
        self.connections[name] = rt
        await self.nursery.start(self._run_connection, rt)

    def stop_connection(self, name: str) -> None:
        rt = self.connections.get(name)
        if rt is not None and rt.scope is not None:
            rt.scope.cancel()

    async def restart_connection(self, name: str) -> None:
        self.stop_connection(name)
        await self.start_connection(name)

    def handle(self, connection: str, hub_object: str) -> ObjectSyncHandle | None:
        """The handle of an object sync running now (None: not running)."""
        rt = self.connections.get(connection)
        if rt is None or rt.handle is None:
            return None
        return rt.handle.object_sync(hub_object)

    def rate_budget(self, connection: str | None = None) -> RateBudgetStatistics | None:
        """The statistics of the hub account's rate budget, or of a connection's app account
        where its connector keeps one shared by the connection's connectors (Pipedrive)."""
        if connection is None:
            if isinstance(self.hub, SupportsRateBudget):
                return self.hub.budget.statistics()
            return None
        rt = self.connections.get(connection)
        budget = rt.env.shared.get("budget") if rt is not None else None
        return budget.statistics() if isinstance(budget, RateBudget) else None

    def intake_stored(self, sources: list[str]) -> None:
        """Events of these inbox sources were stored: wake the intakes that read them, in the
        connections they are for."""
        for rt in self.connections.values():
            mine = [src for src in sources if src in rt.sources()]
            if mine and rt.handle is not None:
                rt.handle.wake_intakes(mine)

    def find_sync(self, connection: str, obj: str) -> ObjectSync | None:
        """An object sync by its hub object or its app object name."""
        for s in self.cfg.syncs:
            if s.connection == connection and obj in (s.hub_object, s.app_object):
                return s
        return None

    # --- reload -------------------------------------------------------------------------------

    async def reload(self) -> list[str]:
        """Re-read the configuration; restart what changed. Returns what happened."""
        try:
            # Secret files are read here: off the event loop, so that a slow or odd file can
            # never stall the daemon (webhooks, the control socket, the syncs).
            cfg, warnings = await trio.to_thread.run_sync(load_config, self.config_path)
            routes = await self._routes(cfg)
        except Exception as exc:
            log.error("reload refused: the configuration is invalid", error=str(exc))
            raise
        old = {n: rt.fingerprint() for n, rt in self.connections.items()}
        journal_changed = ((self.cfg.hub.changes, self.cfg.hub.journal)
                           != (cfg.hub.changes, cfg.hub.journal))
        self.cfg = cfg
        self.routes = routes
        if self.webhooks is not None:
            self.webhooks.routes = self.routes
        done: list[str] = []
        new_names = {c.name for c in cfg.connections}
        for name in list(self.connections):
            if name not in new_names:
                self.stop_connection(name)
                del self.connections[name]
                done.append(f"stopped {name}")
        for conn in cfg.connections:
            fp = self._runtime_for(conn).fingerprint()
            if conn.name not in old:
                await self.start_connection(conn.name)
                done.append(f"started {conn.name}")
            elif old[conn.name] != fp:
                await self.restart_connection(conn.name)
                done.append(f"restarted {conn.name}")
            elif self._paused_by_mappings(conn.name):
                # Its mappings are checked again with the app re-read (a column added).
                await self.restart_connection(conn.name)
                done.append(f"restarted {conn.name} (an object sync was paused)")
        if journal_changed:
            await self._restart_journal()
            done.append("restarted the journal reader" if cfg.hub.changes == "journal"
                        else "stopped the journal reader")
        elif self.journal is not None:
            self.journal.read_now()  # new object types get their subscriptions at once
        log.info("configuration reloaded", changes=done, warnings=[str(w) for w in warnings])
        return done

    def _paused_by_mappings(self, name: str) -> bool:
        rt = self.connections.get(name)
        return rt is not None and any(o.phase == "paused" and o.error
                                      for o in rt.status.objects.values())

    # --- status -----------------------------------------------------------------------------

    def describe(self) -> str:
        states = [f"{n}: {rt.status.state}" for n, rt in self.connections.items()]
        return "; ".join(states) or "no connections"

    def is_ready(self) -> bool:
        return self.ready.is_set() and not self.stopping.is_set()

    async def heartbeat(self) -> None:
        """A round trip through the store thread: proves the daemon still makes progress."""
        assert self.store is not None
        await self.store.read(lambda conn: conn.execute("SELECT 1").fetchone())

    # --- the root task --------------------------------------------------------------------------

    async def run(self, *, extra_tasks: list[Callable[..., Any]] | None = None,
                  task_status: trio.TaskStatus[Daemon] = trio.TASK_STATUS_IGNORED) -> None:
        cfg = self.cfg
        if self.configure_logging:
            daemon_logging.configure(cfg.daemon.log_level, cfg.daemon.log_format)
        # Collections of the young generation every 700 allocations cost a sync of a million
        # records more than a tenth of its time; the daemon's working set is small (the index
        # lives in SQLite), so fewer, larger collections lose nothing.
        gc.set_threshold(50_000, 20, 50)
        gc.freeze()
        for w in self.warnings:
            log.warning("configuration warning", path=w.path, message=w.message)
        async with AsyncExitStack() as stack:
            # A state database that cannot be created or opened, like the secrets below, is
            # for the operator to fix (a restart cannot help): a configuration error.
            try:
                self.state_dir.mkdir(parents=True, exist_ok=True)
                store = await stack.enter_async_context(
                    Store.open(self.state_dir / "crmsync.db"))
            except (OSError, StoreError) as exc:
                reason = str(exc) if isinstance(exc, StoreError) else (
                    f"cannot create {self.state_dir}: {exc.strerror or exc}")
                raise ConfigError([Problem("$.daemon.state_dir", reason)]) from None
            self.store = store
            try:
                self.hub = await self._open_hub(store)
            except ConnectorError as exc:
                if exc.kind != "config":
                    raise
                raise ConfigError([Problem("$.hub.auth", exc.message)]) from None
            try:
                async with trio.open_nursery() as nursery:
                    self.nursery = nursery
                    nursery.start_soon(self._signals, nursery.cancel_scope)
                    self.routes = await self._routes(cfg)
                    self.webhooks = self._webhook_server()
                    if cfg.daemon.webhooks.enabled:
                        await nursery.start(self._serve_webhooks)
                    if cfg.hub.changes == "journal":
                        await nursery.start(self._run_journal)
                    await nursery.start(run_housekeeping, store,
                                        lambda: self.cfg.daemon.history_retention_days)
                    for task in extra_tasks or []:
                        await nursery.start(task, self)
                    for conn in cfg.connections:
                        await self.start_connection(conn.name)
                    self.ready.set()
                    self.notifier.ready(self.describe())
                    interval = watchdog_interval()
                    if interval:
                        nursery.start_soon(feed_watchdog, self.notifier, interval, self.heartbeat)
                    if self.notifier.enabled:
                        nursery.start_soon(self._status_loop)
                    log.info("crmsync running", version=__version__, pid=os.getpid(),
                             connections=[c.name for c in cfg.connections])
                    task_status.started(self)
            finally:
                with trio.CancelScope(shield=True):
                    await self.hub.aclose()  # type: ignore[attr-defined]
        log.info("crmsync stopped")

    async def _status_loop(self) -> None:
        while True:
            await trio.sleep(10)
            self.notifier.status(self.describe())

    async def _signals(self, root: trio.CancelScope) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            async for signum in signals:
                if signum == signal.SIGHUP:
                    try:
                        await self.reload()
                    except Exception:  # already logged; keep running on the old config
                        pass
                    continue
                await self.shutdown(root)
                return

    async def shutdown(self, root: trio.CancelScope) -> None:
        """Stop within the grace period: no new batch starts, batches already running may
        finish (their outcomes commit), then everything is cancelled. A batch cut short is
        safe too: nothing it did is acknowledged until its commit, and it is re-decided on
        the next start."""
        grace = self.cfg.daemon.shutdown_grace_seconds
        log.info("stopping", grace_s=grace)
        self.stopping.set()
        self.notifier.stopping()
        with trio.move_on_after(grace) as scope:
            async with trio.open_nursery() as nursery:
                for rt in self.connections.values():
                    if rt.handle is not None:
                        nursery.start_soon(rt.handle.drain)
        if scope.cancelled_caught:
            log.warning("grace period over: cancelling running syncs", grace_s=grace)
        root.cancel()

    def _webhook_server(self) -> WebhookServer:
        """The webhook application (served over HTTP only when enabled; tests drive it in
        process)."""
        assert self.store is not None
        wh = self.cfg.daemon.webhooks

        return WebhookServer(
            self.store, self.routes, public_base_url=wh.public_base_url,
            max_body_bytes=wh.max_body_bytes, body_deadline=wh.body_deadline_seconds,
            max_concurrent=wh.max_concurrent_requests, on_stored=self.intake_stored,
            is_ready=self.is_ready)

    async def _serve_webhooks(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                              ) -> None:
        from hypercorn.config import Config as HyperConfig
        from hypercorn.trio import serve

        assert self.webhooks is not None
        wh = self.cfg.daemon.webhooks
        hc = HyperConfig()
        hc.bind = [wh.listen]
        hc.alpn_protocols = ["http/1.1"]
        hc.accesslog = None
        hc.errorlog = None
        hc.keep_alive_timeout = 5
        hc.graceful_timeout = 2
        # Bound here rather than inside hypercorn, which turns a failed bind into an unrelated
        # error: an address in use or not on this machine is then a configuration error of
        # `listen`, reported as such. Hypercorn serves the bound socket (as with socket
        # activation).
        try:
            sockets = hc.create_sockets().insecure_sockets
        except (OSError, OverflowError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise ConfigError([Problem("$.daemon.webhooks.listen",
                                       f"cannot listen on {wh.listen}: {reason}")]) from None
        bound = [s.getsockname() for s in sockets]
        hc.bind = [f"fd://{s.detach()}" for s in sockets]
        log.info("webhook server listening", listen=wh.listen,
                 bound=[f"{a[0]}:{a[1]}" for a in bound])
        await serve(self.webhooks.app, hc, task_status=task_status)  # type: ignore[arg-type]

