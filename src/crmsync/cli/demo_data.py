"""Sample data for `crmsync demo`: an app database and a HubSpot account that overlap, with the
mess real CRMs carry — invalid and missing emails, duplicates, companies sharing a domain or a
name written differently. Deterministic for a given seed."""

from __future__ import annotations

import random
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FIRST = ["Ann", "Bob", "Chloé", "Dev", "Eva", "Farid", "Gita", "Hugo", "Ines", "Jon", "Kai",
         "Lena", "Mo", "Nina", "Omar", "Pia", "Quinn", "Rosa", "Sven", "Tara", "Uma", "Vik",
         "Wen", "Xavi", "Yara", "Zoe"]
LAST = ["Lee", "Ng", "Okafor", "Silva", "Novak", "Berg", "Kaur", "Rossi", "Dubois", "Kim",
        "Haddad", "Meyer", "Costa", "Ivanova", "Tanaka", "Walsh", "Moreau", "Fischer"]
WORDS = ["Acme", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay", "Stark", "Wayne",
         "Tyrell", "Cyberdyne", "Soylent", "Wonka", "Gringotts", "Oceanic", "Monarch",
         "Aperture", "Black Mesa", "Nakatomi", "Dunder", "Sterling"]
SUFFIX = ["Inc.", "LLC", "GmbH", "Ltd", "", "", "Corp."]
INDUSTRY = ["COMPUTER_SOFTWARE", "RETAIL", "HOSPITAL_HEALTH_CARE", "FINANCIAL_SERVICES",
            "CONSTRUCTION"]
CITIES = ["Berlin", "Lisbon", "Austin", "Osaka", "Lagos", "Lyon", "Toronto"]

APP_SCHEMA = """
CREATE TABLE organisations (
    id INTEGER PRIMARY KEY,
    name TEXT,
    domain TEXT,
    city TEXT,
    phone TEXT,
    industry TEXT,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE TABLE customers (
    id INTEGER PRIMARY KEY,
    email TEXT,
    first_name TEXT,
    last_name TEXT,
    phone TEXT,
    job_title TEXT,
    company_name TEXT,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
"""


@dataclass
class SampleData:
    hub_contacts: list[dict[str, Any]] = field(default_factory=list)
    hub_companies: list[dict[str, Any]] = field(default_factory=list)
    app_customers: list[dict[str, Any]] = field(default_factory=list)
    app_organisations: list[dict[str, Any]] = field(default_factory=list)
    # What the demo planted, to check the result against.
    overlapping_emails: set[str] = field(default_factory=set)
    invalid_emails: int = 0
    missing_emails: int = 0
    duplicate_emails: int = 0
    overlapping_companies: int = 0
    duplicate_companies: int = 0


def _person(rnd: random.Random, i: int) -> tuple[str, str, str]:
    first = rnd.choice(FIRST)
    last = rnd.choice(LAST)
    email = f"{first.lower().replace('é', 'e')}.{last.lower()}.{i}@example.com"
    return first, last, email


def generate(records: int, seed: int = 7) -> SampleData:
    """`records` contacts spread over both sides (30 % in both), about a quarter as many
    companies, plus planted problems on the app side."""
    rnd = random.Random(seed)
    data = SampleData()
    n_overlap = max(1, int(records * 0.3))
    n_hub_only = max(1, (records - n_overlap) // 2)
    n_app_only = max(1, records - n_overlap - n_hub_only)
    people = [_person(rnd, i) for i in range(n_overlap + n_hub_only + n_app_only)]
    for i, (first, last, email) in enumerate(people):
        phone = f"+1-555-{rnd.randint(1000, 9999)}"
        title = rnd.choice(["CTO", "Buyer", "Engineer", "Founder", None])
        if i < n_overlap:
            data.overlapping_emails.add(email)
            # The same person, known a little differently on each side.
            data.hub_contacts.append({"email": email, "firstname": first, "lastname": last})
            data.app_customers.append({"email": email.upper() if i % 7 == 0 else email,
                                       "first_name": first if i % 3 else first + "ie",
                                       "last_name": last, "phone": phone, "job_title": title})
        elif i < n_overlap + n_hub_only:
            data.hub_contacts.append({"email": email, "firstname": first, "lastname": last,
                                      "phone": phone})
        else:
            data.app_customers.append({"email": email, "first_name": first, "last_name": last,
                                       "phone": phone, "job_title": title})
    # Planted problems on the app side.
    bad = max(2, records // 25)
    for j in range(bad):
        first, last, _ = _person(rnd, 10_000 + j)
        data.app_customers.append({"email": f"{first.lower()}-at-example.com",
                                   "first_name": first, "last_name": last})
        data.invalid_emails += 1
    for j in range(max(1, records // 40)):
        first, last, _ = _person(rnd, 20_000 + j)
        data.app_customers.append({"email": None, "first_name": first, "last_name": last})
        data.missing_emails += 1
    dupes = [c for c in data.app_customers if c["email"] and "@" in c["email"]][:max(1, records // 40)]
    for c in dupes:
        data.app_customers.append({"email": " " + c["email"].title() + " ",
                                   "first_name": c["first_name"], "last_name": "(duplicate)"})
        data.duplicate_emails += 1
    rnd.shuffle(data.app_customers)

    # Companies: overlapping by domain or by a differently written name.
    n_comp = max(4, records // 4)
    for k in range(n_comp):
        word = WORDS[k % len(WORDS)] + ("" if k < len(WORDS) else f" {k // len(WORDS)}")
        domain = f"{word.lower().replace(' ', '')}.example"
        city = rnd.choice(CITIES)
        if k % 3 == 0:  # in both, matched by domain (different name spelling)
            data.hub_companies.append({"name": f"{word} {rnd.choice(SUFFIX)}".strip(),
                                       "domain": domain, "city": city})
            data.app_organisations.append({"name": word.upper(), "domain": f"https://www.{domain}/",
                                           "industry": rnd.choice(INDUSTRY)})
            data.overlapping_companies += 1
        elif k % 3 == 1:  # in both, matched by name (no domain in the app)
            data.hub_companies.append({"name": word, "domain": domain, "city": city})
            data.app_organisations.append({"name": f"{word} Inc.", "domain": None,
                                           "phone": f"+1-555-{rnd.randint(1000, 9999)}"})
            data.overlapping_companies += 1
        else:
            data.app_organisations.append({"name": word, "domain": domain, "city": city})
    # Two app organisations sharing one domain: the second is a duplicate.
    for k in range(max(1, n_comp // 10)):
        word = WORDS[k % len(WORDS)]
        data.app_organisations.append({"name": f"{word} Holdings",
                                       "domain": f"{word.lower().replace(' ', '')}.example"})
        data.duplicate_companies += 1
    return data


def write_app_db(path: Path, data: SampleData) -> None:
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(APP_SCHEMA)
        for table, rows in (("customers", data.app_customers),
                            ("organisations", data.app_organisations)):
            for row in rows:
                cols = list(row)
                conn.execute(f"INSERT INTO {table} ({', '.join(cols)}) VALUES "
                             f"({', '.join('?' * len(cols))})", [row[c] for c in cols])
        conn.commit()
    finally:
        conn.close()
