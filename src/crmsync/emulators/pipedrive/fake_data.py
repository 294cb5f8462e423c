"""A seeded, realistic-looking company: people working at organizations, deals on them spread
over the default pipeline's stages."""

from __future__ import annotations

import random

from .state import AccountState

_FIRST = (
    "Ada", "Alan", "Grace", "Linus", "Margaret", "Dennis", "Barbara", "Ken", "Frances", "Donald",
    "Radia", "Edsger", "Hedy", "Tim", "Katherine", "John", "Sophie", "Guido", "Anita", "Bjarne",
)  # fmt: skip
_LAST = (
    "Lovelace", "Turing", "Hopper", "Torvalds", "Hamilton", "Ritchie", "Liskov", "Thompson",
    "Allen", "Knuth", "Perlman", "Dijkstra", "Lamarr", "Berners-Lee", "Johnson", "McCarthy",
)  # fmt: skip
_ORG_WORDS = (
    "Acme", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay", "Stark", "Wayne", "Tyrell",
    "Cyberdyne", "Soylent", "Wonka", "Gringotts", "Oscorp", "Aperture", "Massive",
)  # fmt: skip
_ORG_SUFFIX = ("Ltd", "Inc", "GmbH", "Oy", "AS", "SA", "BV", "AB")
_DEAL_WORDS = ("Renewal", "Expansion", "Pilot", "Licence", "Support plan", "Migration")


def generate(
    state: AccountState, counts: dict[str, int], seed: int, *, source: str = "app"
) -> dict[str, list[int]]:
    """Creates `counts["organizations"]`, `counts["persons"]`, `counts["deals"]` records through
    the same validation as API writes (webhooks off: seeding is set-up). Unique emails and
    organization names; returns the new ids per entity."""
    rng = random.Random(seed)
    user = state.admin_id
    made: dict[str, list[int]] = {"organizations": [], "persons": [], "deals": []}
    taken_orgs: set[str] = set()
    for i in range(counts.get("organizations", 0)):
        name = f"{rng.choice(_ORG_WORDS)} {rng.choice(_ORG_WORDS)} {rng.choice(_ORG_SUFFIX)}"
        if name in taken_orgs:
            name = f"{name} {i}"
        taken_orgs.add(name)
        slug = "".join(ch for ch in name.lower() if ch.isalnum())
        rec = state.create(
            "organizations",
            {"name": name, "website": f"https://www.{slug}.example"},
            user_id=user,
            source=source,
            notify=False,
        )
        made["organizations"].append(rec.id)
    orgs = made["organizations"]
    for i in range(counts.get("persons", 0)):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        body: dict[str, object] = {
            "name": f"{first} {last}",
            "emails": [{"value": f"{first}.{last}.{i}@example.com".lower(), "label": "work"}],
        }
        if rng.random() < 0.6:
            body["phones"] = [{"value": f"+372 5{rng.randrange(10**6, 10**7)}", "label": "mobile"}]
        if orgs and rng.random() < 0.8:
            body["org_id"] = rng.choice(orgs)
        rec = state.create("persons", body, user_id=user, source=source, notify=False)
        made["persons"].append(rec.id)
    persons = made["persons"]
    stages = sorted(s.id for s in state.all_live("stages"))
    for _ in range(counts.get("deals", 0)):
        deal: dict[str, object] = {
            "title": f"{rng.choice(_ORG_WORDS)} {rng.choice(_DEAL_WORDS)}",
            "value": rng.randrange(1, 500) * 100,
            "currency": rng.choice(("EUR", "USD")),
            "stage_id": rng.choice(stages),
        }
        if persons:
            person_id = rng.choice(persons)
            deal["person_id"] = person_id
            org_id = state.records["persons"][person_id].attrs["org_id"]
            if org_id is not None:
                deal["org_id"] = org_id
        rec = state.create("deals", deal, user_id=user, source=source, notify=False)
        made["deals"].append(rec.id)
    return made
