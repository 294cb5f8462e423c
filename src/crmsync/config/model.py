"""The configuration file's schema, as msgspec Structs decoded from TOML.

Every Struct forbids unknown fields so a misspelled key fails loudly with its `$.path`.
Secrets are never given inline: each one is a `*_env` (environment variable name) or a
`*_file` (a path; systemd credentials arrive as files under `$CREDENTIALS_DIRECTORY`).
Fields added later get defaults (msgspec schema evolution); types never change.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

import msgspec

Direction = Literal["both", "to_hub", "to_app"]
Side = Literal["hub", "app"]
Winner = Literal["hub", "app"]
OnDelete = Literal["mark", "propagate", "review"]
Tier = Literal["starter", "professional", "enterprise", "unlimited", "custom"]
LogFormat = Literal["json", "console"]
LogLevel = Literal["debug", "info", "warning", "error"]
Transform = Literal[
    "string", "number", "bool", "date", "datetime", "enum", "multiselect", "stage", "owner"
]
FilterOperator = Literal[
    "EQ", "NEQ", "LT", "LTE", "GT", "GTE", "IN", "NOT_IN", "HAS_PROPERTY",
    "NOT_HAS_PROPERTY", "CONTAINS",
]
HubObject = Literal["contacts", "companies", "deals", "invoices", "line_items"]

NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]
# A timeout, deadline or grace period: positive and finite (`inf` would lift a bound that
# protects the daemon), at most a day.
Seconds = Annotated[float, msgspec.Meta(gt=0, le=86_400)]
# How often something repeats: at most ten times a second (1e-9 would spin a core), at least
# once a year (and finite).
Interval = Annotated[float, msgspec.Meta(ge=0.1, le=365 * 86_400)]


class _Base(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    pass


# --- daemon ----------------------------------------------------------------------------


class ControlSettings(_Base, frozen=True):
    # Empty means $RUNTIME_DIRECTORY/control.sock, else <state_dir>/control.sock.
    socket_path: str = ""
    # 0o600, or 0o660 together with `group`.
    mode: int = 0o600
    group: str = ""
    max_request_bytes: Annotated[int, msgspec.Meta(gt=0, le=16 * 1024 * 1024)] = 65536
    read_timeout_seconds: Seconds = 5.0


class WebhookServerSettings(_Base, frozen=True):
    enabled: bool = True
    listen: NonEmpty = "127.0.0.1:8080"
    # The URL HubSpot is configured to call, without the path: signatures are computed
    # over it, never over the Host header.
    public_base_url: str = ""
    max_body_bytes: Annotated[int, msgspec.Meta(gt=0, le=16 * 1024 * 1024)] = 1024 * 1024
    body_deadline_seconds: Seconds = 10.0
    max_concurrent_requests: Annotated[int, msgspec.Meta(gt=0, le=10_000)] = 64


class NotifySettings(_Base, frozen=True):
    """Where to announce that an object sync finished its initial sync."""

    webhook_url: str = ""
    command: list[str] = []


class DaemonSettings(_Base, frozen=True):
    state_dir: NonEmpty = "/var/lib/crmsync"
    log_format: LogFormat = "json"
    log_level: LogLevel = "info"
    shutdown_grace_seconds: Seconds = 20.0
    history_retention_days: Annotated[int, msgspec.Meta(ge=1)] = 90
    control: ControlSettings = ControlSettings()
    webhooks: WebhookServerSettings = WebhookServerSettings()
    notify: NotifySettings = NotifySettings()


# --- hub (HubSpot) -----------------------------------------------------------------------


class _TokenAuth(_Base, frozen=True):
    """A credential sent as it is (`Authorization: Bearer …`): it does not expire until it is
    rotated in HubSpot."""

    token_env: str | None = None
    token_file: str | None = None


# The kinds of credential HubSpot issues (hubspot-onboarding.md §0); user-visible names follow
# HubSpot's current terms. What each may do is said by `crmsync doctor` (cli/doctor_checks.py).


class PrivateAppAuth(_TokenAuth, frozen=True, tag="private_app", tag_field="kind"):
    """A legacy private app's access token (`pat-…`): none can be created since 2026-10-26,
    existing ones keep working."""


class ServiceKeyAuth(_TokenAuth, frozen=True, tag="service_key", tag_field="kind"):
    """An account service key: REST calls only, it cannot receive webhooks."""


class StaticTokenAuth(_TokenAuth, frozen=True, tag="static_token", tag_field="kind"):
    """The static token of a project-based app (`auth.type: static`, private distribution)."""


# Where `crmsync connect hubspot` listens for HubSpot's redirect: HubSpot accepts http only for
# `localhost`, and no IP address (hubspot-onboarding.md §1). Register it in the app's settings.
DEFAULT_REDIRECT_URI = "http://localhost:8976/oauth-callback"
DEFAULT_AUTHORIZE_URL = "https://app.hubspot.com/oauth/authorize"


class OAuthAuth(_Base, frozen=True, tag="oauth", tag_field="kind"):
    """An OAuth app (project-based or legacy public) installed in the account.

    `crmsync connect hubspot` writes the refresh token to `refresh_token_file` (give a path in
    the state directory: the daemon writes a rotated refresh token there too). A refresh token
    from the environment or from systemd credentials, which cannot be written, is rotated into
    the state database instead.
    """

    client_id: NonEmpty
    client_secret_env: str | None = None
    client_secret_file: str | None = None
    refresh_token_env: str | None = None
    refresh_token_file: str | None = None
    # Must match a redirect URL registered in the app's settings exactly.
    redirect_uri: NonEmpty = DEFAULT_REDIRECT_URI
    authorize_url: NonEmpty = DEFAULT_AUTHORIZE_URL


HubAuth = PrivateAppAuth | ServiceKeyAuth | StaticTokenAuth | OAuthAuth
TokenAuth = PrivateAppAuth | ServiceKeyAuth | StaticTokenAuth


class RateLimits(_Base, frozen=True):
    per_10_seconds: Annotated[int, msgspec.Meta(gt=0)]
    daily: Annotated[int, msgspec.Meta(gt=0)]
    search_per_second: Annotated[int, msgspec.Meta(gt=0)] = 5


# How HubSpot's changes reach the daemon: signed webhooks to its public URL, the webhooks
# journal pulled over outgoing calls only, or the poller alone (hubspot-onboarding.md §6).
ChangeIntake = Literal["webhooks", "journal", "poll"]

# The journal's scopes as the 2026-03 SPEC names them; HubSpot's docs name them
# `developer.webhooks_journal.read` and `.subscriptions.read` / `.write` instead. Where the docs
# and the spec disagree we follow the spec (hubspot-onboarding.md §3); `scopes` overrides it.
JOURNAL_SCOPES = ("webhooks-journal-data-access", "webhooks-journal-subscription-read",
                  "webhooks-journal-subscription-management")


class JournalSettings(_Base, frozen=True):
    """The webhooks journal (`[hub] changes = "journal"`): read with a client-credentials
    token of the HubSpot app (its client id and secret), kept apart from `hub.auth`."""

    client_id: NonEmpty
    client_secret_env: str | None = None
    client_secret_file: str | None = None
    # The account whose events are read (the local journal). 0: asked from HubSpot at start
    # (account-info, with hub.auth's credentials).
    portal_id: Annotated[int, msgspec.Meta(ge=0)] = 0
    # How often the journal is read when it had nothing new.
    poll_interval_seconds: Seconds = 10.0
    # Entries asked for per read (each holds up to 100 events).
    batch_size: Annotated[int, msgspec.Meta(ge=1, le=100)] = 10
    # A journal file larger than this is not read (its changes are healed by a reconciliation).
    max_file_bytes: Annotated[int, msgspec.Meta(gt=0, le=256 * 1024 * 1024)] = 32 * 1024 * 1024
    scopes: list[NonEmpty] = msgspec.field(default_factory=lambda: list(JOURNAL_SCOPES))
    request_timeout_seconds: Seconds = 30.0


class HubSettings(_Base, frozen=True):
    auth: HubAuth
    changes: ChangeIntake = "webhooks"
    journal: JournalSettings | None = None
    base_url: NonEmpty = "https://api.hubapi.com"
    tier: Tier = "professional"
    # Required when tier = "custom"; overrides the tier's figures otherwise.
    limits: RateLimits | None = None
    poll_interval_seconds: Interval = 300.0
    reconcile_interval_seconds: Interval = 86400.0
    webhook_client_secret_env: str | None = None
    webhook_client_secret_file: str | None = None
    request_timeout_seconds: Seconds = 30.0
    # HubSpot's search index lags behind writes: changes found by polling are read back this
    # far behind "now", so none is skipped (webhooks bring changes at once regardless).
    search_index_lag_seconds: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 30.0


# --- connections (app instances) -------------------------------------------------------


class AppTable(_Base, frozen=True):
    """One app object stored as a table of the app's database (SQLite or PostgreSQL)."""

    object: NonEmpty
    table: NonEmpty
    primary_key: NonEmpty = "id"
    updated_at_column: NonEmpty = "updated_at"
    # Columns crmsync reads and writes; empty means every column of the table (for
    # PostgreSQL: every column of a type crmsync maps; json/jsonb and binary ones only when
    # listed here).
    columns: list[str] = []
    # For deals: the columns holding the pipeline and stage ids.
    pipeline_column: str = ""
    stage_column: str = ""


class AppAssociation(_Base, frozen=True):
    """How the app stores an association: a foreign-key column or a join table."""

    from_object: NonEmpty
    to_object: NonEmpty
    # Foreign key: `column` on from_object's table holds to_object's primary key.
    column: str = ""
    # Join table with two columns.
    join_table: str = ""
    from_column: str = ""
    to_column: str = ""


class AppPipelines(_Base, frozen=True):
    pipelines_table: NonEmpty = "pipelines"
    stages_table: NonEmpty = "stages"


class AppEvents(_Base, frozen=True):
    table: NonEmpty = "events"


# The names the SQLite connector was written with.
SqliteTable = AppTable
SqliteAssociation = AppAssociation
SqlitePipelines = AppPipelines
SqliteEvents = AppEvents


class SqliteConnection(_Base, frozen=True, tag="sqlite", tag_field="type"):
    connector_type: ClassVar[str] = "sqlite"

    name: NonEmpty
    database: NonEmpty
    tables: list[AppTable] = []
    associations: list[AppAssociation] = []
    pipelines: AppPipelines | None = None
    events: AppEvents | None = None
    changelog_table: NonEmpty = "crmsync_changelog"
    poll_interval_seconds: Interval = 5.0
    batch_size: Annotated[int, msgspec.Meta(gt=0, le=10000)] = 500
    # Shared secret for pushes to POST /webhooks/<name> (HMAC-SHA256 with a timestamp).
    webhook_secret_env: str | None = None
    webhook_secret_file: str | None = None

    def describe(self) -> str:
        """Where the app's data is, for people (never a secret)."""
        return self.database


class PostgresConnection(_Base, frozen=True, tag="postgres", tag_field="type"):
    """An app whose data is in PostgreSQL tables.

    The connection string (libpq keywords or a postgresql:// URI) comes from `dsn_file` or
    `dsn_env`, never inline: it may hold a password. Without one there, libpq's own sources
    apply (the passfile: `passfile=` in the string, $PGPASSFILE or ~/.pgpass; $PGPASSWORD).
    """

    connector_type: ClassVar[str] = "postgres"

    name: NonEmpty
    dsn_env: str | None = None
    dsn_file: str | None = None
    # The schema holding the configured tables.
    schema: NonEmpty = "public"
    tables: list[AppTable] = []
    associations: list[AppAssociation] = []
    pipelines: AppPipelines | None = None
    events: AppEvents | None = None
    # The schema crmsync creates for its change log, trigger functions and claim sequence.
    changelog_schema: NonEmpty = "crmsync"
    # The safety-net poll of the change log (notifications wake the reader at once).
    poll_interval_seconds: Seconds = 10.0
    batch_size: Annotated[int, msgspec.Meta(gt=0, le=10000)] = 500
    # Bounds on every statement crmsync runs, and on a wait for a row the app has locked.
    statement_timeout_seconds: Seconds = 30.0
    lock_timeout_seconds: Seconds = 5.0
    connect_timeout_seconds: Annotated[int, msgspec.Meta(gt=0)] = 10
    webhook_secret_env: str | None = None
    webhook_secret_file: str | None = None

    def describe(self) -> str:
        return f"postgres schema {self.schema}"


class PipedriveApiToken(_Base, frozen=True, tag="api_token", tag_field="kind"):
    """A Pipedrive API token (one per user and company; sent as the `x-api-token` header)."""

    token_env: str | None = None
    token_file: str | None = None


class PipedriveOAuth(_Base, frozen=True, tag="oauth", tag_field="kind"):
    """OAuth 2 with a refresh token; the client credentials go to the token endpoint as HTTP
    Basic. A rotated refresh token is kept in the state database."""

    client_id: NonEmpty
    client_secret_env: str | None = None
    client_secret_file: str | None = None
    refresh_token_env: str | None = None
    refresh_token_file: str | None = None
    token_url: NonEmpty = "https://oauth.pipedrive.com/oauth/token"


PipedriveAuth = PipedriveApiToken | PipedriveOAuth
PipedrivePlan = Literal["essential", "advanced", "professional", "power", "enterprise",
                        "unlimited"]


class PipedriveWebhooks(_Base, frozen=True):
    """Pipedrive's webhooks (v2) to `POST /webhooks/<connection>`. Pipedrive signs nothing: it
    sends HTTP Basic credentials, which crmsync checks on every delivery."""

    user: NonEmpty = "crmsync"
    password_env: str | None = None
    password_file: str | None = None
    # "start": crmsync registers its webhooks when the connection starts (and replaces ones
    # it registered earlier for another URL); "manual": only `crmsync ctl webhooks`.
    register: Literal["start", "manual"] = "start"
    # The URL Pipedrive calls; empty: daemon.webhooks.public_base_url + /webhooks/<name>.
    url: str = ""


class PipedriveConnection(_Base, frozen=True, tag="pipedrive", tag_field="type"):
    """One Pipedrive company account (API v2): persons, organizations and deals."""

    connector_type: ClassVar[str] = "pipedrive"

    name: NonEmpty
    auth: PipedriveAuth
    # https://api.pipedrive.com or https://<company>.pipedrive.com (an OAuth token's
    # api_domain replaces it).
    base_url: NonEmpty = "https://api.pipedrive.com"
    # Sizes the daily token budget (30,000 x plan multiplier x seats + top_up_tokens) and
    # the burst window; `unlimited` enforces none.
    plan: PipedrivePlan = "essential"
    seats: Annotated[int, msgspec.Meta(ge=1)] = 1
    top_up_tokens: Annotated[int, msgspec.Meta(ge=0)] = 0
    # Explicit limits replace the plan's figures.
    daily_token_budget: Annotated[int, msgspec.Meta(gt=0)] | None = None
    burst_per_window: Annotated[int, msgspec.Meta(gt=0)] | None = None
    # With the daily budget spent the connection pauses; Pipedrive resets it at midnight in
    # a time zone it does not state, so crmsync tries again this often (a refused call costs
    # nothing).
    budget_probe_interval_seconds: Seconds = 900.0
    # The safety net under webhooks (and the only feed without them): updated_since polls,
    # 10 tokens per object per poll (2,880 a day per object at 300 s).
    poll_interval_seconds: Seconds = 300.0
    # Pipedrive lists leave deleted persons and organizations out: this often, crmsync lists
    # their ids (10 tokens per 500) to find linked records deleted without a webhook.
    delete_sweep_interval_seconds: Seconds = 21600.0
    request_timeout_seconds: Seconds = 30.0
    # Requests in flight at once (writes run concurrently: Pipedrive v2 has no batch writes).
    max_concurrent_requests: Annotated[int, msgspec.Meta(gt=0, le=256)] = 16
    # Where an organization's domain (the match key) lives: `website` (its host name) or the
    # label of a custom field.
    organization_domain_field: NonEmpty = "website"
    webhooks: PipedriveWebhooks | None = None
    # Webhook events of changes crmsync's own user made through the API are echoes of its own
    # writes and are dropped (use a dedicated Pipedrive user for crmsync).
    ignore_own_changes: bool = True
    # crmsync's Pipedrive user; 0: the token's own user (GET /v1/users/me).
    own_user_id: Annotated[int, msgspec.Meta(ge=0)] = 0

    def describe(self) -> str:
        return self.base_url


Connection = SqliteConnection | PostgresConnection | PipedriveConnection


# --- object syncs --------------------------------------------------------------------------


class FieldMapping(_Base, frozen=True):
    hub: NonEmpty
    app: NonEmpty
    direction: Direction = "both"
    enabled: bool = True
    required: bool = False
    transform: Transform = "string"
    # enum: app value -> hub option value.
    options: dict[str, str] = {}
    # multiselect: how the app joins several values (HubSpot always uses ";").
    separator: str = ";"
    # owner (hub = "hubspot_owner_id"): owners are paired by email. The app field holds the
    # owner's email, or with `owner_object` the id of a row of that app object (a table of
    # the connection listing the app's users) whose `owner_email_field` holds the email.
    owner_object: str = ""
    owner_email_field: NonEmpty = "email"


class Filter(_Base, frozen=True):
    side: Side
    property: NonEmpty
    operator: FilterOperator
    value: str | None = None
    values: list[str] = []


class StageMapEntry(_Base, frozen=True):
    hub_pipeline: NonEmpty
    hub_stage: NonEmpty
    app_pipeline: NonEmpty
    app_stage: NonEmpty


class ObjectSync(_Base, frozen=True):
    connection: NonEmpty
    hub_object: HubObject
    app_object: NonEmpty
    direction: Direction = "both"
    conflict_winner: Winner = "hub"
    use_default_mappings: bool = True
    mappings: list[FieldMapping] = []
    filters: list[Filter] = []
    # Match key for objects other than contacts (email) and companies (name or domain):
    # a HubSpot property with hasUniqueValue and the app field mapped to it.
    unique_property: str = ""
    sync_contacts_without_email: bool = False
    on_delete: OnDelete = "mark"
    stage_map: list[StageMapEntry] = []
    auto_map_stages: bool = False
    # Hub object types whose associations with this object are kept on both sides.
    associations: list[HubObject] = []
    event_sync: bool = False
    start_in_preview: bool = False
    enabled: bool = True


class Config(_Base, frozen=True):
    hub: HubSettings
    daemon: DaemonSettings = DaemonSettings()
    connections: list[Connection] = []
    syncs: list[ObjectSync] = []
