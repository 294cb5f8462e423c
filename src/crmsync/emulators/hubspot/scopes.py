"""Which granted scope lets a caller make a call, and HubSpot's 403 when none does.

The scope of each endpoint comes from the `security` block of its SPEC file, where any one listed
scope suffices (hubspot-onboarding.md §3 table). Object types the fact sheets name but whose
scopes they do not list are taken from their SPEC files (`CRM/<Type>/Rollouts/424/v3/*.json`,
read for this emulator): engagements use the contacts scopes, tickets `tickets`, products and
quotes their own or `e-commerce`, goal targets `crm.objects.goals.*`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from .errors import ApiError
from .objects import ObjectType, resolve

# Every app holds `oauth`, the base scope apps must always require (hubspot-onboarding.md §3
# [S]); the emulator grants it to every credential [INF].
BASE_SCOPE = "oauth"

_CONTACTS_READ = ("crm.objects.contacts.read",)
_CONTACTS_WRITE = ("crm.objects.contacts.write",)
# object name → (read scopes, write scopes); any one suffices.
_OBJECT_SCOPES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "contacts": (_CONTACTS_READ, _CONTACTS_WRITE),
    "companies": (("crm.objects.companies.read",), ("crm.objects.companies.write",)),
    "deals": (("crm.objects.deals.read",), ("crm.objects.deals.write",)),
    "invoices": (("crm.objects.invoices.read",), ("crm.objects.invoices.write",)),
    "line_items": (
        ("crm.objects.line_items.read", "e-commerce"),
        ("crm.objects.line_items.write", "e-commerce"),
    ),
    "products": (
        ("crm.objects.products.read", "e-commerce"),
        ("crm.objects.products.write", "e-commerce"),
    ),
    "quotes": (
        ("crm.objects.quotes.read", "e-commerce"),
        ("crm.objects.quotes.write", "e-commerce"),
    ),
    "tickets": (("tickets",), ("tickets",)),
    "goal_targets": (("crm.objects.goals.read",), ("crm.objects.goals.write",)),
    # SPEC lists read scopes on the writes of feedback submissions too.
    "feedback_submissions": (
        ("crm.objects.contacts.read", "crm.objects.feedback_submissions.read"),
        ("crm.objects.contacts.read", "crm.objects.feedback_submissions.read"),
    ),
    "emails": (
        ("crm.objects.contacts.read", "sales-email-read"),
        ("crm.objects.contacts.write", "sales-email-read"),
    ),
    "calls": (_CONTACTS_READ, _CONTACTS_WRITE),
    "communications": (_CONTACTS_READ, _CONTACTS_WRITE),
    "meetings": (_CONTACTS_READ, _CONTACTS_WRITE),
    "notes": (_CONTACTS_READ, _CONTACTS_WRITE),
    "postal_mail": (_CONTACTS_READ, _CONTACTS_WRITE),
    "tasks": (_CONTACTS_READ, _CONTACTS_WRITE),
}

# Writing property and pipeline definitions (SPEC properties.json / pipelines.json, 26 scopes).
_SCHEMA_WRITE = (
    "crm.objects.carts.write",
    "crm.objects.orders.write",
    "crm.objects.users.write",
    "crm.pipelines.orders.write",
    "crm.schemas.appointments.write",
    "crm.schemas.carts.write",
    "crm.schemas.commercepayments.write",
    "crm.schemas.companies.write",
    "crm.schemas.contacts.write",
    "crm.schemas.courses.write",
    "crm.schemas.custom.write",
    "crm.schemas.deals.write",
    "crm.schemas.invoices.write",
    "crm.schemas.listings.write",
    "crm.schemas.orders.write",
    "crm.schemas.projects.write",
    "crm.schemas.quotes.write",
    "crm.schemas.services.write",
    "crm.schemas.subscriptions.write",
    "crm.schemas.tickets.write",
    "e-commerce",
    "tickets",
)
# Reading them: any of about 100 object and schema scopes (hubspot-onboarding.md §3); the
# emulator accepts every `crm.objects.*` / `crm.schemas.*` / `crm.pipelines.*` scope and these.
_SCHEMA_READ_PREFIXES = ("crm.objects.", "crm.schemas.", "crm.pipelines.")
_SCHEMA_READ_EXTRA = ("automation", "e-commerce", "tickets", "cpq.quotes.read", "cpq.quotes.write")

# The webhooks journal: SPEC `Webhooks/…/2026-03/webhooks.json` names these scopes, while the
# docs name developer.webhooks_journal.read / .subscriptions.read|write / .snapshots.read|write
# (hubspot-onboarding.md §3 "discrepancy"): the emulator follows the spec.
JOURNAL_READ = "webhooks-journal-data-access"
JOURNAL_SUBSCRIPTIONS_READ = "webhooks-journal-subscription-read"
JOURNAL_SUBSCRIPTIONS_WRITE = "webhooks-journal-subscription-management"
JOURNAL_SNAPSHOTS = "webhooks-journal-snapshot-management"
JOURNAL_SCOPES = frozenset(
    {JOURNAL_READ, JOURNAL_SUBSCRIPTIONS_READ, JOURNAL_SUBSCRIPTIONS_WRITE, JOURNAL_SNAPSHOTS}
)


# What a credential configured with "every scope" lists when asked for its scopes.
ALL_SCOPES = frozenset(
    {s for pair in _OBJECT_SCOPES.values() for group in pair for s in group}
    | set(_SCHEMA_WRITE)
    | {
        BASE_SCOPE,
        "automation",
        "crm.objects.owners.read",
        "settings.users.read",
        "settings.users.write",
        "crm.schemas.custom.read",
        "analytics.behavioral_events.send",
    }
)


@dataclass(frozen=True)
class Requirement:
    """Any one of `any_of`, or any scope starting with one of `prefixes`."""

    any_of: tuple[str, ...]
    prefixes: tuple[str, ...] = ()

    def met_by(self, granted: frozenset[str] | None) -> bool:
        if granted is None:
            # A credential configured with every scope a credential may hold: the journal's
            # scopes go only to client-credentials tokens (the journal "uses a client
            # credentials token", hubspot-onboarding.md §6) [INF].
            return not JOURNAL_SCOPES.issuperset(self.any_of)
        return any(s in granted for s in self.any_of) or any(
            s.startswith(self.prefixes) for s in granted if self.prefixes
        )


def object_scopes(obj: ObjectType, *, write: bool) -> tuple[str, ...]:
    read_scopes, write_scopes = _OBJECT_SCOPES[obj.name]
    return write_scopes if write else read_scopes


def scopes_for(objects: Iterable[ObjectType], *, write: bool) -> list[str]:
    """The scopes a set of object syncs needs, one per object (the first SPEC lists)."""
    return sorted({object_scopes(o, write=write)[0] for o in objects})


_OBJECTS = re.compile(r"^/crm/v3/objects/([^/]+)(/.*)?$")
_PROPERTIES = re.compile(r"^/crm/v3/properties/([^/]+)(/.*)?$")
_PIPELINES = re.compile(r"^/crm/v3/pipelines/([^/]+)(/.*)?$|^/crm-pipelines/v1/pipelines/([^/]+)")
_ASSOC_BATCH = re.compile(r"^/crm/v4/associations/([^/]+)/([^/]+)/")
_ASSOC_RECORD = re.compile(r"^/crm/v4/objects/([^/]+)/[^/]+/associations/(?:default/)?([^/]+)")


def requirement(method: str, path: str) -> Requirement | None:
    """What a call needs; None: no scope (or an unknown object type, which the route refuses)."""
    read = method == "GET"
    if m := _OBJECTS.match(path):
        obj = resolve(m.group(1))
        if obj is None:
            return None
        rest = m.group(2) or ""
        reads = read or rest.rstrip("/") in ("/search", "/batch/read")
        return Requirement(object_scopes(obj, write=not reads))
    if m := _PROPERTIES.match(path):
        reads = read or (m.group(2) or "").rstrip("/") == "/batch/read"
        return _schema_requirement(write=not reads)
    if _PIPELINES.match(path):
        return _schema_requirement(write=not read)
    if (m := _ASSOC_BATCH.match(path)) or (m := _ASSOC_RECORD.match(path)):
        # Any object scope of the types involved (hubspot-onboarding.md §3).
        scopes: list[str] = []
        for name in m.groups():
            obj = resolve(name)
            if obj is not None:
                scopes += [*object_scopes(obj, write=False), *object_scopes(obj, write=True)]
        return Requirement(tuple(dict.fromkeys(scopes))) if scopes else None
    if path.startswith("/crm/v3/owners"):
        return Requirement(("crm.objects.owners.read", "automation"))
    if path.startswith("/settings/v3/users"):
        if read:
            return Requirement(("settings.users.read", "crm.objects.users.read"))
        return Requirement(("settings.users.write", "crm.objects.users.write"))
    if path.startswith(("/crm/v3/schemas", "/crm-object-schemas/v3/schemas")):
        if read:
            return Requirement(("crm.schemas.custom.read", "crm.objects.custom.read"))
        return Requirement(("crm.schemas.custom.write",))
    if path.startswith("/account-info/"):
        return Requirement((BASE_SCOPE,))
    if path.startswith("/events/v3/send"):
        return Requirement(("analytics.behavioral_events.send",))
    if path.startswith("/webhooks-journal/journal"):
        return Requirement((JOURNAL_READ,))
    if path.startswith("/webhooks-journal/subscriptions"):
        return Requirement((JOURNAL_SUBSCRIPTIONS_READ if read else JOURNAL_SUBSCRIPTIONS_WRITE,))
    if path.startswith("/webhooks-journal/snapshots"):
        return Requirement((JOURNAL_SNAPSHOTS,))
    return None


def _schema_requirement(*, write: bool) -> Requirement:
    if write:
        return Requirement(_SCHEMA_WRITE)
    return Requirement(_SCHEMA_READ_EXTRA, _SCHEMA_READ_PREFIXES)


def missing_scopes(needed: Requirement) -> ApiError:
    """403 MISSING_SCOPES with `errors[].context.requiredGranularScopes` and `links.scopes`
    (fact sheet §4, DOC-OBJ); the message texts are HubSpot's as commonly reported [S]."""
    return ApiError(
        403,
        "MISSING_SCOPES",
        "This app hasn't been granted all required scopes to make this call. "
        "Read more about required scopes here: https://developers.hubspot.com/scopes.",
        errors=[
            {
                "message": "One or more of the following scopes are required.",
                "context": {"requiredGranularScopes": list(needed.any_of)},
            }
        ],
        links={"scopes": "https://developers.hubspot.com/scopes"},
    )
