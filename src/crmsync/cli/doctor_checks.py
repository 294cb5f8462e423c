"""The checks of `crmsync doctor`: the configuration, then HubSpot and the apps as they are.

Each check is one `Check` line: ok, fail (with the fix) or warn (works, with a caveat). They
run in this order, a later one skipped where an earlier failure makes it meaningless:

1. the credential's kind and what it can and cannot do (hubspot-onboarding.md §0);
2. the token: valid, and which account (§2);
3. the granted scopes against what the object syncs need (§3), missing ones named;
4. every app connection opens (through the connector registry: the tables and columns the
   configuration names exist);
5. per object sync, its mappings against both sides' fields: the rules of
   `engine/mapping_check.py`, the same the daemon applies before an initial sync;
6. the pipelines and stages the deal stage maps name exist on both sides;
7. the owners the owner mappings need can be read (§4);
8. how HubSpot's changes arrive (`hub.changes`): webhooks — a signed test delivery to
   `public_base_url`, and the subscriptions to check in the app; the webhooks journal — its
   client-credentials token and its subscriptions, which that token may read (§6); polling;
9. the rate budget left today (fact sheet §3.2).

HubSpot is asked as few times as possible: the token (one call, or none for OAuth, whose
token answer carries account and scopes), the account details, the properties once per hub
object type, the deal pipelines once, the first page of owners once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx

from crmsync.config.defaults import effective_mappings
from crmsync.config.model import Config, Connection, OAuthAuth, ObjectSync
from crmsync.config.secrets import Secret, SecretError, read_secret
from crmsync.connectors.base import Connector, ConnectorError, FieldInfo, SupportsPipelines
from crmsync.connectors.hubspot import account as hub_account
from crmsync.connectors.hubspot.auth import HubSpotOAuth
from crmsync.connectors.hubspot.build import USER_AGENT, budget_for, build_auth
from crmsync.connectors.hubspot.client_credentials import ClientCredentialsAuth
from crmsync.connectors.hubspot.connector import HubSpotConnector
from crmsync.connectors.hubspot.journal import JournalClient
from crmsync.connectors.hubspot.scopes import (
    ScopeNeed,
    maps_owner,
    missing,
    property_write_needs,
    sync_needs,
)
from crmsync.connectors.registry import AppConnectorEnv, open_app_connector
from crmsync.connectors.retry import HttpFailure
from crmsync.daemon.hub_tokens import app_account_key
from crmsync.engine.mapping_check import check_mappings
from crmsync.records import PipelineInfo
from crmsync.store import Store
from crmsync.store import tokens as store_tokens

from .doctor_properties import PropertyPlan, plan_property, property_group

Status = Literal["ok", "fail", "warn"]

CREDENTIAL_NAMES = {
    "service_key": "service key",
    "static_token": "project app static token",
    "private_app": "legacy private app token",
    "oauth": "OAuth app",
}

# Where each kind of credential's scopes are changed (hubspot-onboarding.md §0).
SCOPE_FIXES = {
    "service_key": "edit the service key's scopes (Development → Keys → Service keys); the "
                   "key stays the same",
    "static_token": "add them to requiredScopes in the app's app-hsmeta.json and upload the "
                    "project",
    "private_app": "add them in the private app's settings (Scopes); the token stays the same",
    "oauth": "add them to the app's scopes (requiredScopes in app-hsmeta.json, or the app's "
             "Auth settings), then run `crmsync connect hubspot` again",
}


@dataclass(frozen=True)
class Check:
    """One line of the doctor's answer."""

    name: str
    status: Status
    message: str
    fix: str = ""


@dataclass
class HubView:
    """What the doctor learnt of the hub."""

    connector: HubSpotConnector
    granted: tuple[str, ...] | None = None
    usable: bool = False
    # hub object -> its properties as HubSpot lists them (None: they could not be read)
    properties: dict[str, list[dict[str, Any]] | None] = field(default_factory=dict)


def kind_of(cfg: Config) -> str:
    return str(cfg.hub.auth.__struct_config__.tag)


def denied_scopes(exc: HttpFailure) -> list[str]:
    """The scopes a 403 MISSING_SCOPES names (`errors[].context.requiredGranularScopes`)."""
    body = exc.detail.body if isinstance(exc.detail.body, dict) else {}
    out: list[str] = []
    for err in body.get("errors") or []:
        ctx = err.get("context") if isinstance(err, dict) else None
        if isinstance(ctx, dict):
            out.extend(str(s) for s in ctx.get("requiredGranularScopes") or [])
    return list(dict.fromkeys(out))


class Doctor:
    """Runs the checks of one configuration. `hub_transport` puts an emulator under the hub
    client (tests); `confirm(plans)` is asked before properties are created."""

    def __init__(self, cfg: Config, config_path: Path, *,
                 hub_transport: httpx.AsyncBaseTransport | None = None,
                 keeper: Any = None, store: Store | None = None,
                 app_transports: Mapping[str, httpx.AsyncBaseTransport] | None = None) -> None:
        self.cfg = cfg
        self.config_path = config_path
        # Where relative secret files are found (as the daemon finds them).
        self.base_dir = config_path.resolve().parent
        self.hub_transport = hub_transport
        self.keeper = keeper  # daemon.hub_tokens.RefreshTokenKeeper for an OAuth hub
        # Where the daemon keeps rotated OAuth refresh tokens of apps (None: none use OAuth).
        self.store = store
        self.app_transports = dict(app_transports or {})
        self.checks: list[Check] = []
        self.requests = 0
        self.daily_remaining: int | None = None
        self.daily_limit: int | None = None
        self.window_limit: int | None = None
        self.plans: list[PropertyPlan] = []
        self.created: list[PropertyPlan] = []
        self.portal_id: int | None = None
        self.syncs = [(i, s) for i, s in enumerate(cfg.syncs) if s.enabled]

    def add(self, name: str, status: Status, message: str, fix: str = "") -> None:
        self.checks.append(Check(name, status, message, fix))

    @property
    def failed(self) -> bool:
        return any(c.status == "fail" for c in self.checks)

    # --- the run ----------------------------------------------------------------------------

    async def run(self, *, create_properties: bool = False,
                  confirm: Callable[[list[PropertyPlan]], Awaitable[bool]] | None = None
                  ) -> list[Check]:
        self._credential()
        async with AsyncExitStack() as stack:
            hub = await self._open_hub(stack)
            if hub is not None:
                await self._token(hub)
                self._scopes(hub)
            apps = await self._open_apps(stack)
            mapping_checks = await self._mappings(hub, apps)
            if create_properties and hub is not None and hub.usable:
                if await self._create_properties(hub, confirm):
                    mapping_checks = await self._mappings(hub, apps)
            elif self.plans:
                self.add("create properties", "fail",
                         f"{len(self.plans)} missing HubSpot properties can be created from "
                         "their app fields: " + "; ".join(p.describe() for p in self.plans),
                         "run `crmsync doctor --create-properties` (or create them in HubSpot)")
            self.checks.extend(mapping_checks)
            await self._pipelines(hub, apps)
            await self._owners(hub)
        await self._webhooks()
        self._rate_budget(hub)
        return self.checks

    # --- 1. the credential --------------------------------------------------------------------

    def _credential(self) -> None:
        kind = kind_of(self.cfg)
        poll = f"{self.cfg.hub.poll_interval_seconds:g} s"
        what = {
            "service_key": "REST calls only: it cannot receive webhooks, so changes reach "
                           f"crmsync by polling (every {poll}) or the webhooks journal",
            "static_token": "REST calls and webhooks (subscribed in the project's "
                            "webhooks-hsmeta.json); it does not expire until rotated",
            "private_app": "REST calls and webhooks (subscribed in the private app's "
                           "settings); legacy private apps cannot be created since "
                           "2026-10-26, existing ones keep working",
            "oauth": "REST calls and webhooks; access tokens live 30 minutes and are refreshed "
                     "before they expire with the refresh token",
        }[kind]
        self.add("credential", "ok", f"{CREDENTIAL_NAMES[kind]}: {what}")

    # --- 2. the token -------------------------------------------------------------------------

    async def _open_hub(self, stack: AsyncExitStack) -> HubView | None:
        hub = self.cfg.hub

        keeper = self.keeper
        try:
            auth = build_auth(hub, self.base_dir,
                              refresh_token=keeper.initial if keeper else None,
                              on_refresh_token=keeper.save if keeper else None,
                              reload_refresh_token=keeper.reload if keeper else None)
        except ConnectorError as exc:
            self.add("token", "fail", exc.message, "fix hub.auth (see `crmsync check-config`)")
            return None
        timeout = hub.request_timeout_seconds
        client = await stack.enter_async_context(httpx.AsyncClient(
            base_url=hub.base_url, auth=auth, transport=self.hub_transport,
            timeout=httpx.Timeout(timeout, connect=min(10.0, timeout)),
            headers={"User-Agent": USER_AGENT}, follow_redirects=False,
            event_hooks={"response": [self._count]}))
        connector = HubSpotConnector(client, budget_for(hub.tier, hub.limits),
                                     request_timeout=timeout)
        return HubView(connector)

    async def _count(self, response: httpx.Response) -> None:
        """Every HubSpot answer: counted, and its rate-limit headers kept (fact sheet §3.2)."""
        self.requests += 1
        h = response.headers
        for name, attr in (("X-HubSpot-RateLimit-Daily-Remaining", "daily_remaining"),
                           ("X-HubSpot-RateLimit-Daily", "daily_limit"),
                           ("X-HubSpot-RateLimit-Max", "window_limit")):
            value = h.get(name)
            if value is not None and value.strip().isdigit():
                setattr(self, attr, int(value))

    def _unreachable(self, name: str, exc: HttpFailure) -> None:
        if exc.kind == "config" or exc.status in (401, 403):
            return self.add(name, "fail", f"HubSpot refused the credential: {exc.message}",
                            self._token_fix())
        self.add(name, "fail", f"HubSpot at {self.cfg.hub.base_url} cannot be used now: "
                               f"{exc.message}", "check hub.base_url and the network, then "
                                                 "run the doctor again")

    def _token_fix(self) -> str:
        kind = kind_of(self.cfg)
        if kind == "oauth":
            return ("run `crmsync connect hubspot` again (the app may have been uninstalled, "
                    "or the client id or secret is wrong)")
        where = {"service_key": "Development → Keys → Service keys",
                 "static_token": "the project app's Auth tab",
                 "private_app": "the private app's Auth tab"}[kind]
        return f"put the {CREDENTIAL_NAMES[kind]} from {where} in hub.auth.token_file"

    async def _token(self, hub: HubView) -> None:
        http = hub.connector.http
        auth = hub.connector.client.auth
        info: hub_account.TokenInfo | None = None
        try:
            if isinstance(auth, HubSpotOAuth):
                details = await hub_account.account_details(http)  # refreshes the token
                if auth.scopes is not None:
                    info = hub_account.TokenInfo(auth.hub_id, tuple(auth.scopes))
                else:
                    info = await self._introspect(hub, auth)
            else:
                info = await hub_account.static_token_info(http, self._static_token())
                details = await hub_account.account_details(http)
        except HttpFailure as exc:
            return self._unreachable("token", exc)
        hub.usable = True
        hub.granted = info.scopes if info is not None else None
        account = details.portal_id or (info.hub_id if info else None)
        self.portal_id = account
        facts = ", ".join(x for x in (details.account_type,
                                      details.time_zone and f"time zone {details.time_zone}",
                                      details.data_hosting and f"data in {details.data_hosting}")
                          if x)
        self.add("token", "ok", f"valid for HubSpot account {account}"
                                + (f" ({facts})" if facts else ""))

    def _static_token(self) -> Secret:
        auth = self.cfg.hub.auth
        assert not isinstance(auth, OAuthAuth)
        return read_secret(auth.token_env, auth.token_file, self.base_dir)

    async def _introspect(self, hub: HubView, auth: HubSpotOAuth
                          ) -> hub_account.TokenInfo | None:
        oauth = self.cfg.hub.auth
        assert isinstance(oauth, OAuthAuth)
        token = auth.current_access_token()
        if token is None:
            return None
        secret = read_secret(oauth.client_secret_env, oauth.client_secret_file, self.base_dir)
        return await hub_account.introspect(hub.connector.http, client_id=oauth.client_id,
                                            client_secret=secret, token=token)

    # --- 3. scopes ----------------------------------------------------------------------------

    def _scopes(self, hub: HubView) -> None:
        if not hub.usable:
            return
        needs = sync_needs(s for _, s in self.syncs)
        if hub.granted is None:
            self.add("scopes", "warn", "HubSpot does not say which scopes this credential "
                                       "holds: the calls below show any that is missing",
                     f"it needs {', '.join(n.scope for n in needs)}")
            return
        lacking = missing(needs, hub.granted)
        if lacking:
            self.add("scopes", "fail", "missing scopes: " + "; ".join(
                f"{n.scope} ({n.why})" for n in lacking), SCOPE_FIXES[kind_of(self.cfg)])
        else:
            self.add("scopes", "ok", "the granted scopes cover the object syncs ("
                                     + ", ".join(n.scope for n in needs) + ")")

    def _scope_failure(self, name: str, what: str, exc: HttpFailure) -> None:
        scopes = denied_scopes(exc)
        if exc.status == 403:
            named = f" (it needs {' or '.join(scopes)})" if scopes else ""
            self.add(name, "fail", f"HubSpot refused to {what}{named}",
                     SCOPE_FIXES[kind_of(self.cfg)])
        else:
            self._unreachable(name, exc)

    # --- 4. app connections ---------------------------------------------------------------------

    async def _open_apps(self, stack: AsyncExitStack) -> dict[str, Connector]:
        used = {s.connection for _, s in self.syncs}
        apps: dict[str, Connector] = {}
        for conn in self.cfg.connections:
            if conn.name not in used:
                continue
            where = f"{conn.name} ({conn.connector_type}: {conn.describe()})"
            try:
                env = await self._app_env(conn)
                app = await stack.enter_async_context(
                    open_app_connector(conn, self.base_dir, env))
                objects = [s.app_object for _, s in self.syncs if s.connection == conn.name]
                for obj in objects:
                    await app.describe(obj)
            except ConnectorError as exc:
                self.add(f"connection {conn.name}", "fail", f"{where}: {exc.message}",
                         "the app database must hold the tables and columns the "
                         "configuration names (connections[].tables)")
                continue
            except Exception as exc:  # a driver's own error: name it, check the rest
                self.add(f"connection {conn.name}", "fail",
                         f"{where}: {type(exc).__name__}: {exc}",
                         "check the connection's settings")
                continue
            apps[conn.name] = app
            self.add(f"connection {conn.name}", "ok",
                     f"{where} opens; its objects {', '.join(dict.fromkeys(objects))} exist")
        return apps

    async def _app_env(self, conn: Connection) -> AppConnectorEnv:
        """What the daemon hands the connector: an OAuth app's newest refresh token, and where a
        rotated one goes, so that the doctor's refresh leaves the daemon a working token. No
        webhook URL: the doctor registers nothing."""
        env = AppConnectorEnv(base_dir=self.base_dir,
                              transport=self.app_transports.get(conn.name))
        store = self.store
        if store is not None:
            account = app_account_key(conn.name)
            env.refresh_token = await store.read(store_tokens.get_refresh_token, account)

            async def save(token: str) -> None:
                await store.call(store_tokens.save_refresh_token, account, token)

            env.on_refresh_token = save
        return env

    # --- 5. mappings ----------------------------------------------------------------------------

    async def _hub_fields(self, hub: HubView, obj: str) -> list[dict[str, Any]] | None:
        if obj not in hub.properties:
            try:
                hub.properties[obj] = await hub.connector.properties(obj)
            except HttpFailure as exc:
                hub.properties[obj] = None
                self._scope_failure(f"properties {obj}", f"list the {obj} properties", exc)
        return hub.properties[obj]

    async def _mappings(self, hub: HubView | None, apps: dict[str, Connector]) -> list[Check]:
        out: list[Check] = []
        self.plans = []
        for i, sync in self._syncs_with(apps):
            app = apps[sync.connection]
            props = await self._hub_fields(hub, sync.hub_object) if hub and hub.usable else None
            if props is None:
                continue
            hub_info = {f.name: f for f in (await hub.connector.describe(sync.hub_object)
                                            ).fields} if hub else {}
            app_info = {f.name: f for f in (await app.describe(sync.app_object)).fields}
            conn = self._connection(sync.connection)
            table = next((t for t in getattr(conn, "tables", ())
                          if t.object == sync.app_object), None)
            mappings = effective_mappings(conn.connector_type, sync.hub_object, sync.mappings,
                                          sync.use_default_mappings, list(app_info) or None)
            name = f"mappings syncs[{i}]"
            label = f"{sync.hub_object} ⇄ {sync.connection}.{sync.app_object}"
            problems = check_mappings(
                sync, mappings, hub_info, app_info, sync_path=f"$.syncs[{i}]",
                app_pipeline_field=(table.pipeline_column if table and table.pipeline_column
                                    else "pipeline"),
                app_stage_field=table.stage_column if table else "")
            self._plan(sync, mappings, hub_info, app_info, props)
            for p in problems:
                out.append(Check(name, "fail", f"{label}: {p}"))
            if not problems:
                enabled = sum(1 for m in mappings if m.enabled)
                out.append(Check(name, "ok", f"{label}: {enabled} mappings fit both sides"))
        return out

    def _syncs_with(self, apps: Mapping[str, Connector]) -> list[tuple[int, ObjectSync]]:
        return [(i, s) for i, s in self.syncs if s.connection in apps]

    def _connection(self, name: str) -> Connection:
        return next(c for c in self.cfg.connections if c.name == name)

    def _plan(self, sync: ObjectSync, mappings: list[Any], hub_info: Mapping[str, FieldInfo],
              app_info: Mapping[str, FieldInfo], props: list[dict[str, Any]]) -> None:
        group = property_group(sync.hub_object, props)
        for m in mappings:
            if not m.enabled or m.hub in hub_info or m.app not in app_info:
                continue
            plan = plan_property(sync.hub_object, m, app_info[m.app], sync.app_object, group)
            if isinstance(plan, PropertyPlan) and all(
                    (p.object_name, p.name) != (plan.object_name, plan.name) for p in self.plans):
                self.plans.append(plan)

    async def _create_properties(self, hub: HubView,
                                 confirm: Callable[[list[PropertyPlan]], Awaitable[bool]] | None
                                 ) -> bool:
        """Create the planned properties once `confirm` agrees; True when any was created."""
        if not self.plans:
            self.add("create properties", "ok", "no missing property to create")
            return False
        if confirm is None or not await confirm(list(self.plans)):
            self.add("create properties", "fail", "nothing created: not confirmed",
                     "run again with --yes to create them")
            return False
        if hub.granted is not None:
            lacking: list[ScopeNeed] = missing(
                property_write_needs(p.object_name for p in self.plans), hub.granted)
            if lacking:
                self.add("create properties", "fail", "creating properties needs "
                         + ", ".join(n.scope for n in lacking),
                         SCOPE_FIXES[kind_of(self.cfg)] + " (or create them in HubSpot)")
                return False
        for plan in self.plans:
            try:
                await hub_account.create_property(hub.connector.http, plan.object_name,
                                                  plan.definition)
            except HttpFailure as exc:
                self._scope_failure("create properties",
                                    f"create {plan.object_name}.{plan.name}", exc)
                continue
            self.created.append(plan)
            self.add("create properties", "ok", f"created {plan.describe()}")
        hub.connector.invalidate_caches()
        hub.properties.clear()
        return bool(self.created)

    # --- 6. pipelines ---------------------------------------------------------------------------

    async def _pipelines(self, hub: HubView | None, apps: dict[str, Connector]) -> None:
        deals = [(i, s) for i, s in self._syncs_with(apps)
                 if s.hub_object == "deals" and (s.stage_map or s.auto_map_stages)]
        if not deals or hub is None or not hub.usable:
            return
        try:
            hub_pipes = await hub.connector.pipelines("deals")
        except HttpFailure as exc:
            return self._scope_failure("pipelines", "list the deal pipelines", exc)
        for i, sync in deals:
            app = apps[sync.connection]
            app_pipes: list[PipelineInfo] | None = None
            if isinstance(app, SupportsPipelines):
                try:
                    app_pipes = await app.pipelines(sync.app_object)
                except ConnectorError as exc:
                    self.add(f"pipelines syncs[{i}]", "fail",
                             f"the app's pipelines cannot be read: {exc.message}",
                             "configure connections[].pipelines to name its tables")
                    continue
            problems = []
            for j, e in enumerate(sync.stage_map):
                where = f"$.syncs[{i}].stage_map[{j}]"
                hub_problem = _stage_problem(hub_pipes, e.hub_pipeline, e.hub_stage, "HubSpot")
                if hub_problem:
                    problems.append(f"{where}: {hub_problem}")
                if app_pipes is not None:
                    app_problem = _stage_problem(app_pipes, e.app_pipeline, e.app_stage, "app")
                    if app_problem:
                        problems.append(f"{where}: {app_problem}")
            for p in problems:
                self.add(f"pipelines syncs[{i}]", "fail", p,
                         "use the pipeline and stage ids (not labels) the side lists")
            if not problems:
                stages = sum(len(p.stages) for p in hub_pipes)
                auto = " (the rest are mapped by label at start)" if sync.auto_map_stages else ""
                self.add(f"pipelines syncs[{i}]", "ok",
                         f"{len(sync.stage_map)} stage map entries exist on both sides; HubSpot "
                         f"has {len(hub_pipes)} deal pipelines with {stages} stages{auto}")

    # --- 7. owners ------------------------------------------------------------------------------

    async def _owners(self, hub: HubView | None) -> None:
        if not any(maps_owner(s) for _, s in self.syncs) or hub is None or not hub.usable:
            return
        try:
            owners, more = await hub_account.owners_page(hub.connector.http, limit=100)
        except HttpFailure as exc:
            return self._scope_failure("owners", "list the owners", exc)
        with_email = sum(1 for o in owners if o.email)
        count = f"{with_email}{'+' if more else ''}"
        self.add("owners", "ok", f"{count} HubSpot owners with an email address can be read "
                                 "(owner mappings pair them by email)")

    # --- 8. webhooks ----------------------------------------------------------------------------

    async def _webhooks(self) -> None:
        from crmsync.cli.webhook_probe import probe

        cfg = self.cfg
        kind = kind_of(cfg)
        wh = cfg.daemon.webhooks
        poll = f"every {cfg.hub.poll_interval_seconds:g} s"
        if cfg.hub.changes == "journal":
            return await self._journal()
        if cfg.hub.changes == "poll":
            self.add("webhooks", "ok", f'hub.changes = "poll": HubSpot\'s changes come by '
                                       f"polling ({poll}), no webhooks")
            return
        secret_set = bool(cfg.hub.webhook_client_secret_env or cfg.hub.webhook_client_secret_file)
        configured = wh.enabled and bool(wh.public_base_url)
        if kind == "service_key":
            if configured and secret_set:
                self.add("webhooks", "warn", "webhooks are configured, but HubSpot sends none "
                                             f"for a service key: changes come by polling ({poll})",
                         "use a project app's token or an OAuth app for webhooks, or remove "
                         "hub.webhook_client_secret_*")
            else:
                self.add("webhooks", "ok", f"none for a service key: changes come by polling "
                                           f"({poll})")
            return
        if not configured:
            self.add("webhooks", "warn", f"HubSpot webhooks are off: changes come by polling "
                                         f"({poll})",
                     "to get changes at once, set daemon.webhooks.public_base_url (a public "
                     "https URL reaching daemon.webhooks.listen) and hub.webhook_client_secret_*")
            return
        if not secret_set:
            self.add("webhooks", "fail", "daemon.webhooks.public_base_url is set but "
                                         "hub.webhook_client_secret_* is not: deliveries "
                                         "cannot be verified and are refused",
                     "set hub.webhook_client_secret_file to a file holding the app's client "
                     "secret")
            return
        try:
            secret = read_secret(cfg.hub.webhook_client_secret_env,
                                 cfg.hub.webhook_client_secret_file, self.base_dir)
        except SecretError as exc:
            self.add("webhooks", "fail", f"the webhook client secret: {exc}",
                     "see `crmsync check-config`")
            return
        result = await probe(wh.public_base_url, wh.listen, secret,
                             max_body_bytes=wh.max_body_bytes)
        self.add("webhooks", "ok" if result.ok else "fail", result.message, result.fix)
        if result.ok and wh.public_base_url.startswith("http://"):
            self.add("webhooks https", "warn", f"{wh.public_base_url} is http: HubSpot "
                                               "delivers only to a public https URL",
                     "put a TLS reverse proxy in front of daemon.webhooks.listen")
        self._subscriptions(kind)

    async def _journal(self) -> None:
        """`hub.changes = "journal"`: the app's client credentials get a journal token, and
        its subscriptions (readable with that token) cover the object syncs."""
        settings = self.cfg.hub.journal
        if settings is None:
            return  # check-config reported it
        try:
            secret = read_secret(settings.client_secret_env, settings.client_secret_file,
                                 self.base_dir)
        except SecretError as exc:
            self.add("journal", "fail", f"the journal client secret: {exc}",
                     "see `crmsync check-config`")
            return
        portal = settings.portal_id or self.portal_id
        if not portal:
            self.add("journal", "fail", "the account id is unknown (the token check failed)",
                     "fix the token, or set hub.journal.portal_id")
            return
        objects = [s.hub_object for _, s in self.syncs]
        # What the daemon's journal reader subscribes (daemon/main.py `_journal_routes`):
        # association events of the synced objects only, not of one whose sync is off.
        associations = sorted({o for _, s in self.syncs if s.associations
                               for o in (s.hub_object, *s.associations)} & set(objects))
        timeout = settings.request_timeout_seconds
        auth = ClientCredentialsAuth(client_id=settings.client_id, client_secret=secret,
                                     scopes=settings.scopes)
        async with httpx.AsyncClient(
                base_url=self.cfg.hub.base_url, auth=auth, transport=self.hub_transport,
                timeout=httpx.Timeout(timeout, connect=min(10.0, timeout)),
                headers={"User-Agent": USER_AGENT}, follow_redirects=False,
                event_hooks={"response": [self._count]}) as client:
            journal = JournalClient(client, portal_id=portal, request_timeout=timeout)
            try:
                lacking = await journal.missing_subscriptions(objects, associations)
            except ConnectorError as exc:
                self.add("journal", "fail", f"the webhooks journal cannot be read: {exc.message}",
                         "hub.journal needs the app's client id and secret, and the app the "
                         "journal scopes (" + ", ".join(settings.scopes) + ")")
                return
        self.add("journal", "ok", f"the webhooks journal answers the app {settings.client_id} "
                                  f"for account {portal}: no public URL needed")
        if lacking:
            self.add("subscriptions", "warn", "the journal has no subscription yet for "
                     + ", ".join(f"{k.lower()} {o}" for k, o, _ in lacking),
                     "none to do: crmsync subscribes them when it starts")
        else:
            self.add("subscriptions", "ok", "the journal's subscriptions cover "
                     + ", ".join(dict.fromkeys(objects)))

    def _subscriptions(self, kind: str) -> None:
        wanted = subscriptions_needed(s for _, s in self.syncs)
        where = {
            "static_token": "the project's src/app/webhooks/webhooks-hsmeta.json",
            "private_app": "the private app's Webhooks settings",
            "oauth": "the app's webhooks (legacy public app: its Webhooks settings; project "
                     "app: webhooks-hsmeta.json)",
        }[kind]
        self.add("subscriptions", "warn",
                 "HubSpot does not show webhook subscriptions to this credential; the object "
                 f"syncs need: {'; '.join(wanted)}",
                 f"check them in {where}, with target URL "
                 f"{self.cfg.daemon.webhooks.public_base_url.rstrip('/')}/webhooks/hubspot")

    # --- 9. the rate budget ---------------------------------------------------------------------

    def _rate_budget(self, hub: HubView | None) -> None:
        if hub is None or not hub.usable:
            return
        if self.daily_remaining is not None:
            limit = f" of {self.daily_limit:,}" if self.daily_limit else ""
            share = (self.daily_remaining / self.daily_limit) if self.daily_limit else 1.0
            status: Status = "ok" if share >= 0.1 else "warn"
            window = f"; {self.window_limit} per 10 s" if self.window_limit else ""
            self.add("rate budget", status, f"{self.daily_remaining:,}{limit} requests left "
                                            f"today (HubSpot's count; the day ends at "
                                            f"midnight in the account's time zone){window}",
                     "" if status == "ok" else "the daily limit is nearly spent: syncing "
                                               "pauses until it resets")
        elif isinstance(hub.connector.client.auth, HubSpotOAuth):
            self.add("rate budget", "ok", "HubSpot reports no daily figure to OAuth apps "
                                          "(their limit is per 10 s and per installing account)")
        else:
            self.add("rate budget", "warn", "HubSpot reported no daily figure",
                     "crmsync keeps to hub.tier's limits")


def _stage_problem(pipes: list[PipelineInfo], pipeline: str, stage: str, side: str) -> str:
    for p in pipes:
        if p.id == pipeline:
            if any(s.id == stage for s in p.stages):
                return ""
            return (f"{side} pipeline {pipeline!r} has no stage {stage!r} (its stages: "
                    f"{', '.join(s.id for s in p.stages[:20])})")
    return (f"{side} has no pipeline {pipeline!r} (its pipelines: "
            f"{', '.join(p.id for p in pipes[:20]) or 'none'})")


# Legacy CRM webhook event types exist for these objects (hubspot-api.md §8.2 `eventType` enum);
# others are covered by polling.
_SINGULAR = {"contacts": "contact", "companies": "company", "deals": "deal",
             "line_items": "line_item"}


def subscriptions_needed(syncs: Any) -> list[str]:
    """The webhook subscriptions an object sync uses, per hub object."""
    out = []
    for s in syncs:
        one = _SINGULAR.get(s.hub_object)
        if one is None:
            out.append(f"{s.hub_object}: none (polling)")
            continue
        kinds = ["creation", "deletion", "propertyChange", "restore"]
        if s.hub_object in ("contacts", "companies", "deals"):
            kinds.append("merge")
        if s.associations:
            kinds.append("associationChange")
        out.append(f"{one}.{{{','.join(kinds)}}}")
    return list(dict.fromkeys(out))

