"""A seeded, realistic-looking account: contacts working at companies, deals on them."""

from __future__ import annotations

import random
from typing import Any

from .objects import COMPANIES, CONTACTS, DEALS, LINE_ITEMS, ObjectType
from .properties import OWNER_PROPERTY
from .state import CrmState

_FIRST = (
    "Ada",
    "Alan",
    "Grace",
    "Linus",
    "Margaret",
    "Dennis",
    "Barbara",
    "Ken",
    "Frances",
    "Donald",
    "Radia",
    "Edsger",
    "Hedy",
    "Tim",
    "Katherine",
    "John",
    "Sophie",
    "Guido",
    "Anita",
    "Bjarne",
    "Joan",
    "Niklaus",
    "Karen",
    "Leslie",
    "Mary",
    "Claude",
    "Jean",
    "Carl",
    "Ida",
    "Elena",
)
_LAST = (
    "Lovelace",
    "Turing",
    "Hopper",
    "Torvalds",
    "Hamilton",
    "Ritchie",
    "Liskov",
    "Thompson",
    "Allen",
    "Knuth",
    "Perlman",
    "Dijkstra",
    "Lamarr",
    "Berners-Lee",
    "Johnson",
    "McCarthy",
    "Wilson",
    "van Rossum",
    "Borg",
    "Stroustrup",
    "Clarke",
    "Wirth",
    "Jones",
    "Lamport",
    "Keller",
    "Shannon",
    "Sammet",
    "Petri",
    "Rhoades",
    "Garcia",
)
_COMPANY_A = (
    "Blue",
    "North",
    "Bright",
    "Iron",
    "Silver",
    "Quiet",
    "Rapid",
    "Green",
    "Red",
    "Atlas",
)
_COMPANY_B = (
    "Harbor",
    "Peak",
    "Forge",
    "Field",
    "Works",
    "Labs",
    "Systems",
    "Logistics",
    "Foods",
    "Media",
)
_CITIES = (
    "Boston",
    "Dublin",
    "Berlin",
    "Lyon",
    "Austin",
    "Toronto",
    "Sydney",
    "Osaka",
    "Porto",
    "Oslo",
)
_TITLES = ("CEO", "CTO", "Head of Sales", "Account Manager", "Engineer", "Buyer", "Office Manager")
_LIFECYCLE = (
    "subscriber",
    "lead",
    "marketingqualifiedlead",
    "salesqualifiedlead",
    "opportunity",
    "customer",
)
_STAGES = (
    "appointmentscheduled",
    "qualifiedtobuy",
    "presentationscheduled",
    "decisionmakerboughtin",
    "contractsent",
    "closedwon",
    "closedlost",
)
_DAY_MS = 86_400_000


def generate(
    state: CrmState, counts: dict[str, int], seed: int, *, source: str
) -> dict[str, list[str]]:
    """Creates the asked number of owners, companies, contacts, deals and line items through
    `state` (so they are validated like API writes) and associates them; returns the new ids.
    With owners asked for, companies, contacts and deals get one of them as `hubspot_owner_id`
    (from a random stream of their own, so the rest of the account is the same either way)."""
    rng = random.Random(seed)
    owner_rng = random.Random(seed + 1)
    made: dict[str, list[str]] = {}
    owner_ids: list[str] = []
    for i in range(counts.get("owners", 0)):
        first, last = owner_rng.choice(_FIRST), owner_rng.choice(_LAST)
        owner = state.owners.add(
            {
                "email": f"{first}.{last.replace(' ', '')}.owner{i + 1}@example.com".lower(),
                "firstName": first,
                "lastName": last,
            }
        )
        owner_ids.append(str(owner.id))
    if owner_ids:
        made["owners"] = owner_ids

    def create(obj: ObjectType, props: dict[str, Any]) -> int:
        if owner_ids and obj is not LINE_ITEMS:
            props = {**props, OWNER_PROPERTY: owner_rng.choice(owner_ids)}
        rec = state.create(obj, props, source=source)
        made.setdefault(obj.name, []).append(str(rec.id))
        return rec.id

    company_ids: list[tuple[int, str, str]] = []
    for i in range(counts.get("companies", 0)):
        name = f"{rng.choice(_COMPANY_A)} {rng.choice(_COMPANY_B)} {i + 1}"
        domain = name.lower().replace(" ", "") + ".example.com"
        city = rng.choice(_CITIES)
        company_ids.append(
            (create(COMPANIES, {"name": name, "domain": domain, "city": city}), name, domain)
        )

    contact_ids: list[int] = []
    for i in range(counts.get("contacts", 0)):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        company = rng.choice(company_ids) if company_ids else None
        domain = company[2] if company else "mail.example.org"
        props = {
            "email": f"{first}.{last.replace(' ', '')}.{i + 1}@{domain}".lower(),
            "firstname": first,
            "lastname": last,
            "phone": f"+1 555 {rng.randint(100, 999)} {rng.randint(1000, 9999)}",
            "jobtitle": rng.choice(_TITLES),
            "lifecyclestage": rng.choice(_LIFECYCLE),
        }
        if company:
            props["company"] = company[1]
        contact_id = create(CONTACTS, props)
        contact_ids.append(contact_id)
        if company:
            state.associate(CONTACTS, contact_id, COMPANIES, company[0], {279}, source=source)

    for i in range(counts.get("deals", 0)):
        close_ms = state.now_ms() + rng.randint(-60, 120) * _DAY_MS
        deal_id = create(
            DEALS,
            {
                "dealname": f"Deal {i + 1}: {rng.choice(_COMPANY_B)} renewal",
                "amount": str(rng.randint(5, 500) * 100),
                "pipeline": "default",
                "dealstage": rng.choice(_STAGES),
                "closedate": str(close_ms - close_ms % 1000),
            },
        )
        if contact_ids:
            state.associate(DEALS, deal_id, CONTACTS, rng.choice(contact_ids), {3}, source=source)
        if company_ids:
            state.associate(
                DEALS, deal_id, COMPANIES, rng.choice(company_ids)[0], {341}, source=source
            )

    for i in range(counts.get("line_items", 0)):
        create(
            LINE_ITEMS,
            {
                "name": f"Item {i + 1}",
                "quantity": str(rng.randint(1, 20)),
                "price": str(rng.randint(1, 200)),
            },
        )
    return made
