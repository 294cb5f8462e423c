"""`PipedriveConnector`: a Pipedrive company as the app side of object syncs, on API v2.

Objects: `persons` (⇄ HubSpot contacts), `organizations` (⇄ companies), `deals` (⇄ deals),
with their pipelines and stages, and the associations Pipedrive keeps as foreign keys
(`person.org_id`, `deal.person_id`, `deal.org_id`). Facts and token costs:
shared/reference/pipedrive-api.md (section numbers A.x below); records.py says how records are
shown as flat properties.

Every call goes through `PipedriveHttp`: its token cost is charged to the account's budget
before it is sent. What that means for the shape of the calls:

- lists page by cursor, 500 at a time (10 tokens a page, A.2);
- a few ids are read one by one (1 token each), more through `ids=` (10 tokens per 100);
- there are no batch writes in v2 (A.1): a batch of creates / updates / deletes runs
  concurrently (at most `max_concurrent_requests` in flight), paced by the burst window;
- changes are polled with `updated_since` / `updated_until`, sorted by `update_time` (A.4),
  over closed seconds only (the filters work at the second shown in `update_time`, so a
  second is read once nobody can write in it any more); deleted deals come with
  `status=deleted`, deleted persons and organizations do not come at all: the runtime sweeps
  for them (`Capabilities.deletes_in_changes = False`);
- a create whose answer is lost is reported as such (`RecordError.unknown`) and never sent
  again here: the runtime (`runtime.create_healing`) looks it up by the key `create_keys`
  names (search) before it is sent again, so a timeout never makes a duplicate.

Record identity (connectors/base.py): Pipedrive never gives a deleted record's id to another
record (ids count up per company and deletes are soft), so records carry no incarnation ("",
as HubSpot's), and an update has no condition to hold (`conditional_update` is not set).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
import msgspec
import structlog
import trio

from crmsync.config.model import PipedriveApiToken, PipedriveConnection
from crmsync.config.secrets import Secret, SecretError, read_secret
from crmsync.connectors.base import (
    AssociationChange,
    Capabilities,
    Changes,
    Connector,
    ConnectorError,
    CreateKey,
    FieldInfo,
    ObjectInfo,
    Page,
    PipelineInfo,
    Record,
    RecordError,
    StageInfo,
    SupportsAssociations,
    SupportsCreateHealing,
    SupportsPipelines,
    WriteResult,
)
from crmsync.connectors.opener import Opener
from crmsync.connectors.pipedrive.auth import ApiToken, PipedriveOAuth
from crmsync.connectors.pipedrive.fields import (
    ENTITIES,
    FIELDS_PATH,
    WEBHOOK_ENTITY,
    Catalog,
    CatalogError,
    FieldDef,
)
from crmsync.connectors.pipedrive.http import (
    PIPEDRIVE_RETRY_POLICY,
    PipedriveHttp,
    budget_for,
)
from crmsync.connectors.pipedrive.records import (
    BodyBuilder,
    ValueProblem,
    domain_of,
    rfc3339,
    to_ms,
    to_record,
)
from crmsync.connectors.pipedrive.webhooks import PipedriveReceiver
from crmsync.connectors.ratelimit import RateBudget, RateBudgetStatistics
from crmsync.connectors.retry import HttpFailure, RetryPolicy

log = structlog.get_logger("crmsync.connectors.pipedrive")

T = TypeVar("T")

V2 = "/api/v2"
PAGE_SIZE = 500  # the largest `limit` v2 lists take (A.2)
IDS_PER_CALL = 100  # `ids=` names at most 100 (A.1)
# Up to this many ids are read by id (1 token each) rather than through `ids=` (10 tokens).
GET_EACH_MAX = 5
CATALOG_SECONDS = 600.0
# How far behind the wall clock polling reads: `updated_since` compares at the second, so a
# second is read once it is over, with room for the difference between Pipedrive's clock and
# ours.
POLL_LAG_SECONDS = 2.0
CACHE_ARRAYS = 50_000
WEBHOOK_NAME = "crmsync:{connection}:{entity}"

# Token costs per call [PD-spec-v2 / PD-spec-v1 x-token-cost] (A.1).
COST_LIST = 10
COST_GET = 1
COST_CREATE = 5
COST_UPDATE = 5
COST_DELETE = 3
COST_SEARCH = 20
COST_PIPELINES = 5
COST_FIELDS = 10
COST_WEBHOOKS_LIST = 10
COST_WEBHOOK_ADD = 10
COST_WEBHOOK_DELETE = 6
COST_ME = 2

# The foreign keys that hold associations: (object holding it, its field) by object pair.
FOREIGN_KEYS: dict[tuple[str, str], tuple[str, str]] = {
    ("persons", "organizations"): ("persons", "org_id"),
    ("deals", "persons"): ("deals", "person_id"),
    ("deals", "organizations"): ("deals", "org_id"),
}
# What a lost create is looked up by (`find`, through search), per object, in order.
_MATCH_FIELDS: dict[str, tuple[str, ...]] = {
    "persons": ("email", "name"),
    "organizations": ("name",),
    "deals": ("title",),
}


class WebhookInfo(msgspec.Struct, frozen=True):
    id: str
    entity: str
    url: str
    user: str | None = None
    active: bool = True


class PipedriveStatistics(msgspec.Struct, frozen=True):
    open: bool
    user_id: int | None
    company_id: int | None
    requests: int
    tokens_charged: int
    rate_limited: int
    budget: RateBudgetStatistics


def _secret(env: str | None, file: str | None, base_dir: Path | None, what: str) -> Secret:
    try:
        return read_secret(env, file, base_dir)
    except SecretError as exc:
        raise ConnectorError("config", "permission_denied", f"{what}: {exc}") from None


def _entity(object_name: str) -> str:
    if object_name not in ENTITIES:
        raise ConnectorError("config", "not_found",
                             f"Pipedrive has no object {object_name!r} (crmsync syncs "
                             f"{', '.join(ENTITIES)})")
    return object_name


def _data(body: Any) -> Any:
    return body.get("data") if isinstance(body, dict) else None


def _next_cursor(body: Any) -> str | None:
    extra = body.get("additional_data") if isinstance(body, dict) else None
    nxt = extra.get("next_cursor") if isinstance(extra, dict) else None
    return str(nxt) if nxt else None


def _failure_error(exc: HttpFailure) -> RecordError:
    return RecordError(category=exc.category, message=exc.message,
                       retryable=exc.kind in ("transient", "rate_limited"))


class PipedriveConnector:
    """See the module docstring. `settings` is the connection's `[[connections]]` entry.

    `client` (tests) replaces the `httpx.AsyncClient` the connector builds (base URL, auth,
    timeouts, limits; `transport` goes underneath it); `budget` is the account's `RateBudget`,
    which must outlive the connector when the connection restarts (the daemon keeps it);
    `webhook_url` is where Pipedrive should deliver events; `receiver` learns crmsync's user
    id once the connector knows it (echoes). `wall_clock` gives epoch seconds.
    """

    def __init__(self, settings: PipedriveConnection, *, client: httpx.AsyncClient | None = None,
                 transport: httpx.AsyncBaseTransport | None = None,
                 budget: RateBudget | None = None, base_dir: Path | None = None,
                 refresh_token: str | None = None,
                 on_refresh_token: Callable[[str], Awaitable[None]] | None = None,
                 webhook_url: str = "", receiver: PipedriveReceiver | None = None,
                 wall_clock: Callable[[], float] = time.time,
                 poll_lag: float = POLL_LAG_SECONDS) -> None:
        self.settings = settings
        self.name = settings.name
        self.capabilities = Capabilities(
            webhooks=settings.webhooks is not None, change_log=False, polling=True,
            write_batch_size=100, read_batch_size=IDS_PER_CALL, pipelines=True,
            associations=True, events=False, local_find=False, deletes_in_changes=False)
        self.base_dir = base_dir
        self.wall_clock = wall_clock
        self.poll_lag = poll_lag
        self.webhook_url = webhook_url
        self.receiver = receiver
        self._given_client = client
        self._transport = transport
        self._refresh_token = refresh_token
        self._on_refresh_token = on_refresh_token
        self._owned: httpx.AsyncClient | None = None
        self.budget = budget or budget_for(
            settings.plan, seats=settings.seats, top_up_tokens=settings.top_up_tokens,
            oauth=not isinstance(settings.auth, PipedriveApiToken),
            daily=settings.daily_token_budget, burst=settings.burst_per_window,
            name=settings.name)
        self.http: PipedriveHttp | None = None
        self._limiter = trio.CapacityLimiter(settings.max_concurrent_requests)
        self._catalogs: dict[str, tuple[float, Catalog]] = {}
        self._catalog_lock = trio.Lock()
        self._pipelines: tuple[float, list[PipelineInfo]] | None = None
        # The raw emails / phones arrays last read, so that an update of the primary value
        # keeps the other entries without reading the record again.
        self._arrays: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.own_user_id: int | None = settings.own_user_id or None
        self.company_id: int | None = None
        self.default_currency = "USD"
        self._state = "new"

    @classmethod
    def from_env(cls, settings: PipedriveConnection, env: Any) -> PipedriveConnector:
        """Built by the registry with what the daemon keeps for the connection (see
        `crmsync.connectors.registry.AppConnectorEnv`)."""
        budget = env.shared.get("budget") if env is not None else None
        if env is not None and budget is None:
            c = cls(settings, transport=env.transport, base_dir=env.base_dir,
                    refresh_token=env.refresh_token, on_refresh_token=env.on_refresh_token,
                    webhook_url=env.webhook_url, receiver=env.receiver)
            env.shared["budget"] = c.budget
            return c
        return cls(settings, budget=budget,
                   transport=env.transport if env is not None else None,
                   base_dir=env.base_dir if env is not None else None,
                   refresh_token=env.refresh_token if env is not None else None,
                   on_refresh_token=env.on_refresh_token if env is not None else None,
                   webhook_url=env.webhook_url if env is not None else "",
                   receiver=env.receiver if env is not None else None)

    @staticmethod
    def webhook_receiver(settings: PipedriveConnection,
                         base_dir: Path | None = None) -> PipedriveReceiver | None:
        """The receiver checking the webhooks' Basic credentials (see webhooks.py)."""
        wh = settings.webhooks
        if wh is None:
            return None
        return PipedriveReceiver(wh.user, read_secret(wh.password_env, wh.password_file,
                                                      base_dir),
                                 ignore_own_changes=settings.ignore_own_changes,
                                 own_user_id=settings.own_user_id or None)

    @staticmethod
    def secrets(settings: PipedriveConnection, base_dir: Path | None) -> list[str]:
        """The API token or OAuth client secret and refresh token, and the webhook password,
        for log redaction (those that cannot be read are left out: opening reports them)."""
        auth = settings.auth
        sources: list[tuple[str | None, str | None]] = (
            [(auth.token_env, auth.token_file)] if isinstance(auth, PipedriveApiToken)
            else [(auth.client_secret_env, auth.client_secret_file),
                  (auth.refresh_token_env, auth.refresh_token_file)])
        if settings.webhooks is not None:
            sources.append((settings.webhooks.password_env, settings.webhooks.password_file))
        out = []
        for env, file in sources:
            if env or file:
                try:
                    out.append(read_secret(env, file, base_dir).reveal())
                except SecretError:
                    continue
        return out

    @staticmethod
    def removal_plan(settings: PipedriveConnection, base_dir: Path | None) -> list[str]:
        """What `remove` would remove: the webhooks crmsync registered for this connection
        (asked through the API; blocking, for the command line)."""
        hooks = trio.run(_uninstall, settings, base_dir, False)
        return [f"webhook {h.id} ({h.entity} events to {h.url})" for h in hooks]

    @staticmethod
    def remove(settings: PipedriveConnection, base_dir: Path | None) -> list[str]:
        """Remove the webhooks crmsync registered for this connection (blocking)."""
        hooks = trio.run(_uninstall, settings, base_dir, True)
        return [f"webhook {h.id} ({h.entity} events to {h.url})" for h in hooks]

    def id_problem(self, object_name: str, record_id: str) -> str | None:
        """Why `record_id` cannot name a Pipedrive record (ids are positive whole numbers)."""
        if object_name not in ENTITIES:
            return f"Pipedrive has no object {object_name!r}"
        if not (record_id.isascii() and record_id.isdigit()) or len(record_id) > 18 \
                or int(record_id) == 0:
            return f"{record_id[:40]!r} is not a Pipedrive id (a positive whole number)"
        return None

    def stage_fields(self, object_name: str) -> tuple[str, str]:
        """The fields holding a deal's pipeline and stage ids."""
        return "pipeline_id", "stage"

    # --- lifecycle ------------------------------------------------------------------------

    def open(self) -> Opener[PipedriveConnector]:
        """Build the HTTP client, learn crmsync's user and company (`GET /v1/users/me`) and,
        with `webhooks.register = "start"`, make sure the webhooks are registered. Raises
        ConnectorError(kind="config") for missing secrets or refused credentials."""
        return Opener(self._open, self.aclose)

    def _auth(self) -> httpx.Auth:
        s = self.settings
        auth = s.auth
        if isinstance(auth, PipedriveApiToken):
            return ApiToken(_secret(auth.token_env, auth.token_file, self.base_dir,
                                    f"connection {s.name!r}: the Pipedrive API token"))
        secret = _secret(auth.client_secret_env, auth.client_secret_file, self.base_dir,
                         f"connection {s.name!r}: the OAuth client secret")
        token: Secret | str = self._refresh_token or _secret(
            auth.refresh_token_env, auth.refresh_token_file, self.base_dir,
            f"connection {s.name!r}: the OAuth refresh token")
        return PipedriveOAuth(client_id=auth.client_id, client_secret=secret,
                              refresh_token=token, token_url=auth.token_url,
                              on_refresh_token=self._on_refresh_token)

    async def _open(self) -> PipedriveConnector:
        if self._state != "new":
            raise RuntimeError(f"connector {self.name!r} was already opened")
        s = self.settings
        client = self._given_client
        if client is None:
            timeout = s.request_timeout_seconds
            n = s.max_concurrent_requests
            client = self._owned = httpx.AsyncClient(
                base_url=s.base_url.rstrip("/"), auth=self._auth(),
                timeout=httpx.Timeout(timeout, connect=min(10.0, timeout)),
                limits=httpx.Limits(max_connections=n, max_keepalive_connections=n,
                                    keepalive_expiry=30.0),
                headers={"User-Agent": "crmsync/0.1"}, transport=self._transport,
                follow_redirects=False)
        self.http = PipedriveHttp(client, self.budget, request_timeout=s.request_timeout_seconds,
                                  policy=PIPEDRIVE_RETRY_POLICY,
                                  probe_interval=s.budget_probe_interval_seconds)
        try:
            # Sent even when the daily budget looks spent: whether it goes through says
            # whether Pipedrive's day began again (a paused connection resumes then).
            me = _data(await self.http.json("GET", "/v1/users/me", cost=COST_ME,
                                            probe=True)) or {}
            if not self.own_user_id and isinstance(me.get("id"), int):
                self.own_user_id = me["id"]
            if isinstance(me.get("company_id"), int):
                self.company_id = me["company_id"]
            if isinstance(me.get("default_currency"), str):
                self.default_currency = me["default_currency"]
            if self.receiver is not None and self.own_user_id is not None:
                self.receiver.own_user_id = self.own_user_id
            wh = s.webhooks
            if wh is not None and wh.register == "start" and self.webhook_url:
                await self.register_webhooks()
        except BaseException:
            await self._close_client()
            raise
        self._state = "open"
        log.info("pipedrive connected", connection=self.name, user_id=self.own_user_id,
                 company_id=self.company_id)
        return self

    async def _close_client(self) -> None:
        if self._owned is not None:
            await self._owned.aclose()
            self._owned = None

    async def aclose(self) -> None:
        self._state = "closed"
        await self._close_client()

    def statistics(self) -> PipedriveStatistics:
        h = self.http
        return PipedriveStatistics(
            open=self._state == "open", user_id=self.own_user_id, company_id=self.company_id,
            requests=h.requests_sent if h else 0, tokens_charged=h.tokens_charged if h else 0,
            rate_limited=h.rate_limited if h else 0, budget=self.budget.statistics())

    def _http(self) -> PipedriveHttp:
        if self.http is None:
            raise RuntimeError(f"connector {self.name!r} is not open")
        return self.http

    async def _each(self, n: int, fn: Callable[[int], Awaitable[T]]) -> list[T | BaseException]:
        """fn(0..n-1) concurrently (at most `max_concurrent_requests` at once); each outcome
        or the ConnectorError it raised, in order."""
        out: list[T | BaseException] = [ConnectorError("record", "internal", "not run")] * n

        async def one(i: int) -> None:
            async with self._limiter:
                try:
                    out[i] = await fn(i)
                except ConnectorError as exc:
                    out[i] = exc

        async with trio.open_nursery() as nursery:
            for i in range(n):
                nursery.start_soon(one, i)
        return out

    def _results(self, outcomes: Sequence[WriteResult | BaseException]) -> list[WriteResult]:
        """Per-input results. A failure of the connection rather than of the input (the
        budget spent, the credentials refused) is raised when nothing got through; inputs it
        stopped after others got through fail with it, retryable, so what was written is
        still committed."""
        fatal = [o for o in outcomes if isinstance(o, ConnectorError) and o.kind != "record"]
        if fatal and not any(isinstance(o, WriteResult) and o.ok for o in outcomes):
            raise fatal[0]
        out: list[WriteResult] = []
        for o in outcomes:
            if isinstance(o, WriteResult):
                out.append(o)
            elif isinstance(o, HttpFailure):
                out.append(WriteResult(ok=False, error=_failure_error(o)))
            elif isinstance(o, ConnectorError):
                out.append(WriteResult(ok=False, error=RecordError(
                    o.category, o.message, retryable=o.kind in ("transient", "rate_limited"))))
            else:
                raise o
        return out

    # --- fields -----------------------------------------------------------------------------

    async def catalog(self, object_name: str) -> Catalog:
        """The object's fields with the account's custom fields (cached for 10 minutes)."""
        entity = _entity(object_name)
        async with self._catalog_lock:
            cached = self._catalogs.get(entity)
            now = trio.current_time()
            if cached and now - cached[0] < CATALOG_SECONDS:
                return cached[1]
            definitions: list[Any] = []
            cursor: str | None = None
            # Pages here, not in the runtime (runtime.paging): the field catalog is the
            # connector's own metadata, read whole into its cache (a few hundred fields).
            while True:
                params: dict[str, str | int] = {"limit": PAGE_SIZE}
                if cursor:
                    params["cursor"] = cursor
                body = await self._http().json("GET", f"{V2}/{FIELDS_PATH[entity]}",
                                               params=params, cost=COST_FIELDS)
                definitions.extend(_data(body) or [])
                cursor = _next_cursor(body)
                if not cursor:
                    break
            catalog = Catalog(entity, definitions)
            self._catalogs[entity] = (now, catalog)
            return catalog

    async def _domain_field(self) -> FieldDef:
        name = self.settings.organization_domain_field
        catalog = await self.catalog("organizations")
        try:
            fdef = catalog.resolve(name)
        except CatalogError as exc:
            raise ConnectorError("config", "not_found",
                                 f"connection {self.name!r}: organization_domain_field: "
                                 f"{exc}") from None
        if fdef.name == "domain" or fdef.kind not in ("string", "address"):
            raise ConnectorError("config", "invalid_value",
                                 f"connection {self.name!r}: organization_domain_field "
                                 f"{name!r} is not a text field")
        return fdef

    async def _domain_of(self, entity: str) -> FieldDef:
        """Where `domain` lives: only organizations have one (asked for nothing else, so a
        persons-only sync never spends tokens on organization fields)."""
        if entity == "organizations":
            return await self._domain_field()
        return FieldDef("domain", "website", "string")

    async def _builder(self, entity: str) -> BodyBuilder:
        return BodyBuilder(entity, await self.catalog(entity), await self._domain_of(entity),
                           self.default_currency)

    async def _check(self, entity: str, properties: Sequence[str]) -> Catalog:
        """The catalog, once every name in `properties` (what the object sync maps, keys
        and filters on) is known: a misspelt or deleted field pauses the connection with its
        name instead of syncing empty values."""
        catalog = await self.catalog(entity)
        for name in properties:
            try:
                catalog.resolve(name)
            except CatalogError as exc:
                raise ConnectorError("config", "not_found",
                                     f"connection {self.name!r}: {exc}") from None
        return catalog

    def _remember(self, entity: str, raw: Mapping[str, Any]) -> None:
        if entity != "persons":
            return
        key = str(raw.get("id"))
        self._arrays[key] = {"emails": raw.get("emails"), "phones": raw.get("phones")}
        self._arrays.move_to_end(key)
        while len(self._arrays) > CACHE_ARRAYS:
            self._arrays.popitem(last=False)

    async def _records(self, entity: str, raws: Sequence[Any]) -> list[Record]:
        catalog = await self.catalog(entity)
        domain = await self._domain_of(entity)
        out = []
        for raw in raws:
            if not isinstance(raw, dict) or "id" not in raw:
                continue
            self._remember(entity, raw)
            out.append(to_record(entity, raw, catalog, domain))
        return out

    async def describe(self, object_name: str) -> ObjectInfo:
        entity = _entity(object_name)
        catalog = await self.catalog(entity)
        types = {"int": "number", "number": "number", "monetary": "number", "date": "date",
                 "datetime": "datetime", "bool": "bool", "enum": "enumeration",
                 "set": "enumeration"}
        fields = [FieldInfo(name=f.name, type=types.get(f.kind, "string"),
                            read_only=f.read_only, options=tuple(f.options.values()))
                  for f in [*catalog.by_name.values(), *catalog.custom_by_label().values()]]
        return ObjectInfo(name=entity, fields=tuple(fields), updated_at_field="update_time")

    # --- reading ------------------------------------------------------------------------------

    async def scan(self, object_name: str, cursor: str | None,
                   properties: Sequence[str]) -> Page:
        """One page (≤500) of the live records in id order (10 tokens)."""
        entity = _entity(object_name)
        await self._check(entity, properties)
        params: dict[str, str | int] = {"limit": PAGE_SIZE, "sort_by": "id"}
        if cursor:
            params["cursor"] = cursor
        body = await self._http().json("GET", f"{V2}/{entity}", params=params, cost=COST_LIST)
        records = await self._records(entity, _data(body) or [])
        return Page(records=[r for r in records if not r.archived],
                    next_cursor=_next_cursor(body))

    async def _get(self, entity: str, rid: str) -> Any:
        """One record by id (1 token), None when it does not exist."""
        if not str(rid).isdigit():
            return None
        try:
            return _data(await self._http().json("GET", f"{V2}/{entity}/{rid}", cost=COST_GET))
        except HttpFailure as exc:
            if exc.category == "not_found":
                return None
            raise

    async def _read_raw(self, entity: str, ids: Sequence[str]) -> list[Any]:
        wanted = [i for i in dict.fromkeys(str(i) for i in ids) if i.isdigit()]
        if len(wanted) <= GET_EACH_MAX:
            got = await self._each(len(wanted), lambda i: self._get(entity, wanted[i]))
            for g in got:
                if isinstance(g, BaseException):
                    raise g
            return [g for g in got if g is not None]
        out: list[Any] = []
        for at in range(0, len(wanted), IDS_PER_CALL):
            chunk = wanted[at:at + IDS_PER_CALL]
            params: dict[str, str | int] = {"ids": ",".join(chunk), "limit": IDS_PER_CALL}
            body = await self._http().json("GET", f"{V2}/{entity}", params=params,
                                           cost=COST_LIST)
            out.extend(_data(body) or [])
        return out

    async def read(self, object_name: str, ids: Sequence[str],
                   properties: Sequence[str]) -> dict[str, Record]:
        """The live records among `ids` (deleted, archived and unknown ones are absent)."""
        entity = _entity(object_name)
        await self._check(entity, properties)
        records = await self._records(entity, await self._read_raw(entity, ids))
        return {r.id: r for r in records if not r.archived}

    async def _search_ids(self, entity: str, field: str, term: str) -> list[str]:
        """The ids of every record search finds for `term`. Its pages (and those of `find`'s
        read of every record, for a field search does not cover) stay in the connector:
        `find` answers which records hold a key, which must be whole (a partial answer
        would let a create make a duplicate)."""
        ids: list[str] = []
        cursor: str | None = None
        while True:
            params: dict[str, str | int] = {"term": term, "fields": field,
                                            "exact_match": "true", "limit": PAGE_SIZE}
            if cursor:
                params["cursor"] = cursor
            body = await self._http().json("GET", f"{V2}/{entity}/search", params=params,
                                           cost=COST_SEARCH, search=True)
            items = (_data(body) or {}).get("items") or []
            ids.extend(str(it["item"]["id"]) for it in items
                       if isinstance(it, dict) and isinstance(it.get("item"), dict))
            cursor = _next_cursor(body)
            if not cursor:
                return ids

    async def find(self, object_name: str, field: str, value: str,
                   properties: Sequence[str]) -> list[Record]:
        """Records whose `field` equals `value` case-insensitively (`domain`: the same host).
        Through search (20 tokens; exact match on the whole value) where Pipedrive searches
        that field, else by reading every record (10 tokens per 500)."""
        entity = _entity(object_name)
        catalog = await self._check(entity, [*properties, field])
        fdef = catalog.resolve(field)
        wanted = str(value).strip()
        if not wanted:
            return []
        domain = await self._domain_of(entity)
        search_field: str | None = {
            ("persons", "email"): "email", ("persons", "name"): "name",
            ("organizations", "name"): "name", ("deals", "title"): "title",
        }.get((entity, fdef.name))
        if fdef.custom and fdef.kind == "string":
            search_field = "custom_fields"
        if fdef.name == "domain" and domain.custom and domain.kind == "string":
            search_field = "custom_fields"
        if fdef.name == "domain":
            wanted = domain_of(wanted) or wanted

        def same(rec: Record) -> bool:
            v = rec.properties.get(fdef.name if not fdef.custom else fdef.key)
            return v is not None and str(v).strip().casefold() == wanted.casefold()

        if search_field is not None:
            ids = await self._search_ids(entity, search_field, str(value).strip())
            recs = await self._records(entity, await self._read_raw(entity, ids))
            return [r for r in recs if not r.archived and same(r)]
        found: list[Record] = []
        cursor: str | None = None
        while True:
            page = await self.scan(entity, cursor, properties)
            found.extend(r for r in page.records if same(r))
            if page.next_cursor is None:
                return found
            cursor = page.next_cursor

    # --- incremental changes ------------------------------------------------------------------

    def start_cursor(self) -> str:
        return msgspec.json.encode({"since": self._upper_ms()}).decode()

    def _upper_ms(self) -> int:
        """The start of the newest second no write can still land in."""
        return int((self.wall_clock() - self.poll_lag) // 1 * 1000)

    async def changes_since(self, object_name: str, cursor: str | None,
                            properties: Sequence[str]) -> Changes:
        """One page (≤500, 10 tokens) of the records updated in [since, until) (`until`: the
        last closed second), oldest first by `update_time`; deleted deals with
        `archived=True`. `more=True` says to call again at once (the runtime does:
        `runtime.paging.change_pages`). The cursor holds the bounds and the list's own
        cursor, so a long pass resumes where it stopped."""
        entity = _entity(object_name)
        if cursor is None:
            return Changes(records=[], cursor=self.start_cursor())
        try:
            cur = msgspec.json.decode(cursor.encode())
            since = int(cur["since"])
            until = int(cur["until"]) if cur.get("until") is not None else None
            page_cursor = cur.get("page")
        except (msgspec.DecodeError, KeyError, TypeError, ValueError):
            raise ConnectorError("record", "internal",
                                 f"unreadable Pipedrive change cursor {cursor[:80]!r}") from None
        await self._check(entity, properties)
        if until is None:
            until = self._upper_ms()
            page_cursor = None
        if until <= since:
            return Changes(records=[], cursor=cursor)
        params: dict[str, str | int] = {
            "updated_since": rfc3339(since), "updated_until": rfc3339(until),
            "sort_by": "update_time", "sort_direction": "asc", "limit": PAGE_SIZE}
        if entity == "deals":
            # Deleted deals are listed with this status (A.4, [PD-spec-v2]).
            params["status"] = "open,won,lost,deleted"
        if page_cursor:
            params["cursor"] = str(page_cursor)
        body = await self._http().json("GET", f"{V2}/{entity}", params=params, cost=COST_LIST)
        records = [Record(rec.id, {}, rec.updated_at, archived=True) if rec.archived else rec
                   for rec in await self._records(entity, _data(body) or [])]
        page_cursor = _next_cursor(body)
        if page_cursor is None:
            done = {"since": until}
            return Changes(records=records, cursor=msgspec.json.encode(done).decode())
        resume = {"since": since, "until": until, "page": page_cursor}
        return Changes(records=records, cursor=msgspec.json.encode(resume).decode(), more=True)

    # --- writing ----------------------------------------------------------------------------

    async def create(self, object_name: str,
                     inputs: Sequence[Mapping[str, Any]]) -> list[WriteResult]:
        """`POST /{object}` per input (5 tokens), concurrently; one result per input."""
        entity = _entity(object_name)
        builder = await self._builder(entity)

        async def one(i: int) -> WriteResult:
            try:
                body = builder.body(inputs[i], create=True)
            except ValueProblem as exc:
                return WriteResult(ok=False, error=RecordError("invalid_value", str(exc)))
            return await self._create_one(entity, body, inputs[i])

        return self._results(await self._each(len(inputs), one))

    async def _create_one(self, entity: str, body: dict[str, Any],
                          values: Mapping[str, Any]) -> WriteResult:
        sent_at = int(self.wall_clock() * 1000)
        try:
            answer = await self._http().json("POST", f"{V2}/{entity}", json=body,
                                             cost=COST_CREATE, idempotent=False)
        except HttpFailure as exc:
            if not exc.ambiguous:
                if exc.kind == "record":
                    return WriteResult(ok=False, error=_failure_error(exc))
                raise
            # Sent, answer lost: it may have been made. Never sent again here: the runtime
            # looks it up by `create_keys` (runtime.create_healing).
            log.warning("pipedrive_create_outcome_unknown", object=entity, error=exc.message)
            wait = max(exc.resolution.min_wait, exc.retry_after or 0.0)
            return WriteResult(ok=False, error=RecordError(
                "api_unavailable", "Pipedrive did not confirm this create", retryable=True,
                unknown=True, sent_at=sent_at, retry_after=wait or None))
        (rec,) = await self._records(entity, [_data(answer)])
        return WriteResult(ok=True, record=rec)

    # --- what the runtime heals creates with (SupportsCreateHealing) ---------------------------

    # Pipedrive's search is read as it answers (no wait for an index to catch up).
    index_lag = 0.0
    created_at_field = "add_time"

    @property
    def retry_policy(self) -> RetryPolicy:
        return self.http.policy if self.http is not None else PIPEDRIVE_RETRY_POLICY

    def created_at(self, record: Record) -> int | None:
        # A record without `add_time` counts as made long ago (a conflict, never ours).
        return to_ms(record.properties.get("add_time"))

    async def create_keys(self, object_name: str, inputs: Sequence[Mapping[str, Any]]
                          ) -> list[CreateKey | None]:
        """Per input, the first of its object's match fields it holds (`_MATCH_FIELDS`; a
        person's name as the create sends it), found through search."""
        entity = _entity(object_name)
        builder = await self._builder(entity)
        out: list[CreateKey | None] = []
        for values in inputs:
            key: CreateKey | None = None
            for flat in _MATCH_FIELDS[entity]:
                value = values.get(flat)
                if flat == "name" and entity == "persons":
                    try:
                        value = builder.body(values, create=True).get("name")
                    except ValueProblem:
                        value = None
                if value not in (None, "") and str(value).strip():
                    key = CreateKey(flat, str(value).strip(), consistent=False)
                    break
            out.append(key)
        return out

    async def update(self, object_name: str, inputs: Sequence[tuple[str, Mapping[str, Any]]],
                     expected: Sequence[Record | None] | None = None) -> list[WriteResult]:
        """`PATCH /{object}/{id}` per input (5 tokens; +1 to read a person whose primary email
        or phone changes and was not read lately), concurrently. Pipedrive has no conditional
        update: `expected` is not used (and not given: `conditional_update` is not set)."""
        entity = _entity(object_name)
        builder = await self._builder(entity)

        async def one(i: int) -> WriteResult:
            rid, changes = str(inputs[i][0]), inputs[i][1]
            if not rid.isdigit():
                return WriteResult(ok=False, error=RecordError("not_found",
                                                               f"{rid!r} is not a record id"))
            current = None
            if builder.needs_current(changes):
                current = self._arrays.get(rid)
                if current is None:
                    raw = await self._get(entity, rid)
                    if raw is None:
                        return WriteResult(ok=False, error=RecordError(
                            "not_found", f"{entity[:-1]} {rid} does not exist"))
                    self._remember(entity, raw)
                    current = self._arrays.get(rid)
            try:
                body = builder.body(changes, current)
            except ValueProblem as exc:
                return WriteResult(ok=False, error=RecordError("invalid_value", str(exc)))
            if not body:
                return WriteResult(ok=True)
            try:
                answer = await self._http().json("PATCH", f"{V2}/{entity}/{rid}", json=body,
                                                 cost=COST_UPDATE)
            except HttpFailure as exc:
                if exc.kind == "record":
                    return WriteResult(ok=False, error=_failure_error(exc))
                raise
            (rec,) = await self._records(entity, [_data(answer)])
            return WriteResult(ok=True, record=rec)

        return self._results(await self._each(len(inputs), one))

    async def archive(self, object_name: str, ids: Sequence[str]) -> list[WriteResult]:
        """`DELETE /{object}/{id}` per id (3 tokens; a soft delete, A.3), concurrently; an id
        already gone succeeds."""
        entity = _entity(object_name)

        async def one(i: int) -> WriteResult:
            rid = str(ids[i])
            if not rid.isdigit():
                return WriteResult(ok=True)
            try:
                await self._http().request("DELETE", f"{V2}/{entity}/{rid}", cost=COST_DELETE)
            except HttpFailure as exc:
                if exc.category == "not_found":
                    return WriteResult(ok=True)
                if exc.kind == "record":
                    return WriteResult(ok=False, error=_failure_error(exc))
                raise
            return WriteResult(ok=True)

        return self._results(await self._each(len(ids), one))

    # --- pipelines ----------------------------------------------------------------------------

    async def pipelines(self, object_name: str) -> list[PipelineInfo]:
        """Deal pipelines with their stages by `order_nr`, then `won` and `lost` (5 + 5 tokens;
        cached for 10 minutes)."""
        if _entity(object_name) != "deals":
            raise ConnectorError("config", "not_found", "only Pipedrive deals have pipelines")
        now = trio.current_time()
        if self._pipelines and now - self._pipelines[0] < CATALOG_SECONDS:
            return self._pipelines[1]
        pipes = await self._list_all(f"{V2}/pipelines", COST_PIPELINES)
        stages = await self._list_all(f"{V2}/stages", COST_PIPELINES)

        def order(x: Mapping[str, Any]) -> tuple[int, int]:
            return (int(x.get("order_nr") or 0), int(x.get("id") or 0))

        out = []
        for p in sorted((p for p in pipes if not p.get("is_deleted")), key=order):
            mine = sorted((s for s in stages if s.get("pipeline_id") == p.get("id")
                           and not s.get("is_deleted")), key=order)
            listed = [StageInfo(id=str(s["id"]), label=str(s.get("name") or "")) for s in mine]
            # A closed deal keeps its stage and has status won / lost: crmsync shows the
            # outcome as two more stages of every pipeline (see fields.py).
            listed += [StageInfo(id="won", label="Won"), StageInfo(id="lost", label="Lost")]
            out.append(PipelineInfo(id=str(p["id"]), label=str(p.get("name") or ""),
                                    stages=tuple(listed)))
        self._pipelines = (now, out)
        return out

    async def _list_all(self, path: str, cost: int) -> list[dict[str, Any]]:
        """Every entry of a small configuration list (pipelines, stages), read whole into the
        connector's cache: its pages are the connector's, not the runtime's (runtime.paging
        drives the record lists)."""
        out: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            params: dict[str, str | int] = {"limit": PAGE_SIZE}
            if cursor:
                params["cursor"] = cursor
            body = await self._http().json("GET", path, params=params, cost=cost)
            out.extend(x for x in _data(body) or [] if isinstance(x, dict))
            cursor = _next_cursor(body)
            if not cursor:
                return out

    # --- associations -------------------------------------------------------------------------

    # Reading an association from its target's side costs a list call per record: it is kept
    # by the object sync of the object holding the key only (see association_pairs).
    associations_directed = True

    def association_pairs(self) -> set[tuple[str, str]]:
        """The (object holding the foreign key, its target) pairs Pipedrive keeps."""
        return set(FOREIGN_KEYS)

    def _foreign_key(self, from_object: str, to_object: str) -> tuple[str, str, bool]:
        """(holder object, field, forward): forward when `from_object` holds the key."""
        if (from_object, to_object) in FOREIGN_KEYS:
            holder, fk = FOREIGN_KEYS[(from_object, to_object)]
            return holder, fk, True
        if (to_object, from_object) in FOREIGN_KEYS:
            holder, fk = FOREIGN_KEYS[(to_object, from_object)]
            return holder, fk, False
        raise ConnectorError("config", "association_failed",
                             f"Pipedrive keeps no association between {from_object!r} and "
                             f"{to_object!r}")

    async def read_associations(self, from_object: str, to_object: str,
                                ids: Sequence[str]) -> dict[str, list[str]]:
        """Forward (the records holding the key): read them. Backward: list the holders
        pointing at each id (10 tokens per id: crmsync keeps associations from the holder's
        object sync, see the daemon)."""
        holder, fk, forward = self._foreign_key(from_object, to_object)
        out: dict[str, list[str]] = {str(i): [] for i in ids}
        if forward:
            for raw in await self._read_raw(holder, list(out)):
                target = raw.get(fk)
                if target and not raw.get("is_deleted") and str(raw.get("id")) in out:
                    out[str(raw["id"])] = [str(target)]
            return out
        for rid in out:
            if not rid.isdigit():
                continue
            cursor: str | None = None
            while True:
                params: dict[str, str | int] = {fk: rid, "limit": PAGE_SIZE}
                if cursor:
                    params["cursor"] = cursor
                body = await self._http().json("GET", f"{V2}/{holder}", params=params,
                                               cost=COST_LIST)
                out[rid].extend(str(r["id"]) for r in _data(body) or [] if isinstance(r, dict))
                cursor = _next_cursor(body)
                if not cursor:
                    break
        return out

    async def write_associations(self, from_object: str, to_object: str,
                                 changes: Sequence[AssociationChange]) -> list[WriteResult]:
        """Set the holder's foreign key (replacing the partner it held: it holds one), or
        clear it while it still points at the partner being removed. One PATCH (5 tokens)
        per change, concurrently; removals read the holder first (1 token)."""
        holder, fk, forward = self._foreign_key(from_object, to_object)

        async def one(i: int) -> WriteResult:
            c = changes[i]
            rid, target = (c.from_id, c.to_id) if forward else (c.to_id, c.from_id)
            if not str(rid).isdigit() or not str(target).isdigit():
                return WriteResult(ok=False, error=RecordError(
                    "association_failed", f"{rid!r} -> {target!r} are not record ids"))
            if c.removed:
                raw = await self._get(holder, rid)
                if raw is None or str(raw.get(fk)) != str(target):
                    return WriteResult(ok=True)
                value: int | None = None
            else:
                value = int(target)
            try:
                await self._http().json("PATCH", f"{V2}/{holder}/{rid}", json={fk: value},
                                        cost=COST_UPDATE)
            except HttpFailure as exc:
                if exc.kind == "record":
                    return WriteResult(ok=False, error=RecordError("association_failed",
                                                                   exc.message))
                raise
            return WriteResult(ok=True)

        return self._results(await self._each(len(changes), one))

    # --- webhooks -----------------------------------------------------------------------------

    def _webhook_name(self, entity: str) -> str:
        return WEBHOOK_NAME.format(connection=self.name, entity=entity)

    async def list_webhooks(self) -> list[WebhookInfo]:
        """The webhooks crmsync registered for this connection (`GET /v1/webhooks`, 10)."""
        body = await self._http().json("GET", "/v1/webhooks", cost=COST_WEBHOOKS_LIST)
        prefix = WEBHOOK_NAME.format(connection=self.name, entity="")
        out = []
        for h in _data(body) or []:
            if not isinstance(h, dict) or not str(h.get("name") or "").startswith(prefix):
                continue
            out.append(WebhookInfo(id=str(h.get("id")), entity=str(h.get("event_object")),
                                   url=str(h.get("subscription_url")),
                                   user=h.get("http_auth_user"),
                                   active=h.get("is_active") not in (0, False)))
        return out

    def _webhook_password(self) -> Secret:
        wh = self.settings.webhooks
        if wh is None:
            raise ConnectorError("config", "invalid_value",
                                 f"connection {self.name!r} has no [connections.webhooks]")
        return _secret(wh.password_env, wh.password_file, self.base_dir,
                       f"connection {self.name!r}: the webhook password")

    async def register_webhooks(self, url: str = "") -> list[WebhookInfo]:
        """Make sure one webhook (v2, every action) per synced object points at `url` (default:
        the configured one) with the configured Basic credentials; remove crmsync's webhooks
        of this connection that point elsewhere. Returns the webhooks as they are now."""
        url = url or self.webhook_url
        wh = self.settings.webhooks
        if wh is None or not url:
            raise ConnectorError("config", "invalid_value",
                                 f"connection {self.name!r}: no webhook URL (set "
                                 "[connections.webhooks] and daemon.webhooks.public_base_url)")
        password = self._webhook_password()
        existing = await self.list_webhooks()
        keep: dict[str, WebhookInfo] = {}
        for h in existing:
            if h.url == url and h.user == wh.user and h.active and h.entity not in keep:
                keep[h.entity] = h
            else:
                await self._remove_webhook(h)
        for entity in ENTITIES:
            obj = WEBHOOK_ENTITY[entity]
            if obj in keep:
                continue
            body = {"subscription_url": url, "event_action": "*", "event_object": obj,
                    "name": self._webhook_name(obj), "http_auth_user": wh.user,
                    "http_auth_password": password.reveal(), "version": "2.0"}
            answer = _data(await self._http().json("POST", "/v1/webhooks", json=body,
                                                   cost=COST_WEBHOOK_ADD)) or {}
            keep[obj] = WebhookInfo(id=str(answer.get("id")), entity=obj, url=url, user=wh.user)
            log.info("pipedrive webhook registered", connection=self.name, entity=obj,
                     webhook_id=keep[obj].id)
        return list(keep.values())

    async def _remove_webhook(self, h: WebhookInfo) -> None:
        try:
            await self._http().request("DELETE", f"/v1/webhooks/{h.id}",
                                       cost=COST_WEBHOOK_DELETE)
        except HttpFailure as exc:
            if exc.category != "not_found":
                raise
        log.info("pipedrive webhook removed", connection=self.name, entity=h.entity,
                 webhook_id=h.id)

    async def remove_webhooks(self) -> list[WebhookInfo]:
        """Remove every webhook crmsync registered for this connection; returns them."""
        hooks = await self.list_webhooks()
        for h in hooks:
            await self._remove_webhook(h)
        return hooks


async def _uninstall(settings: PipedriveConnection, base_dir: Path | None,
                     remove: bool) -> list[WebhookInfo]:
    # No webhook URL: opening registers nothing.
    async with PipedriveConnector(settings, base_dir=base_dir).open() as c:
        return await (c.remove_webhooks() if remove else c.list_webhooks())


if TYPE_CHECKING:
    def _implements(c: PipedriveConnector) -> tuple[Connector, SupportsPipelines,
                                                    SupportsAssociations, SupportsCreateHealing]:
        return c, c, c, c
