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
    company_id INTEGER REFERENCES organisations(id),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE TABLE pipelines (id TEXT PRIMARY KEY, label TEXT);
CREATE TABLE stages (id TEXT PRIMARY KEY, pipeline_id TEXT, label TEXT, display_order INTEGER);
CREATE TABLE opportunities (
    id INTEGER PRIMARY KEY,
    name TEXT,
    amount REAL,
    close_date TEXT,
    pipeline TEXT,
    stage TEXT,
    company_id INTEGER REFERENCES organisations(id),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE TABLE opportunity_customers (
    opportunity_id INTEGER REFERENCES opportunities(id),
    customer_id INTEGER REFERENCES customers(id),
    PRIMARY KEY (opportunity_id, customer_id)
);
CREATE TABLE invoices (
    id INTEGER PRIMARY KEY,
    number TEXT,
    currency TEXT,
    invoice_date TEXT,
    due_date TEXT,
    customer_id INTEGER REFERENCES customers(id),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE TABLE invoice_lines (
    id INTEGER PRIMARY KEY,
    invoice_id INTEGER REFERENCES invoices(id),
    name TEXT,
    quantity REAL,
    price REAL,
    sku TEXT,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE TABLE events (
    event_id TEXT,
    contact_email TEXT,
    name TEXT,
    occurred_at TEXT,
    properties TEXT
);
INSERT INTO pipelines VALUES ('sales', 'Sales');
INSERT INTO stages VALUES
    ('appt', 'sales', 'Appointment scheduled', 1),
    ('qualified', 'sales', 'Qualified to buy', 2),
    ('demo', 'sales', 'Presentation Scheduled', 3),
    ('contract', 'sales', 'contract-sent', 4),
    ('won', 'sales', 'Won', 5),
    ('lost', 'sales', 'closed-lost', 6),
    ('hold', 'sales', 'On hold', 7);
"""

# App stages and how many demo deals sit in each; "hold" has no HubSpot counterpart.
DEAL_STAGES = ["appt", "qualified", "demo", "contract", "won", "lost"]
UNMAPPED_STAGE = "hold"
PRODUCTS = [("Widget", 19.5), ("Gadget", 120.0), ("Support plan", 49.0), ("Setup", 300.0)]


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
    app_deals: list[dict[str, Any]] = field(default_factory=list)
    hub_deals: list[dict[str, Any]] = field(default_factory=list)
    app_invoices: list[dict[str, Any]] = field(default_factory=list)
    app_invoice_lines: list[dict[str, Any]] = field(default_factory=list)
    deal_contacts: list[tuple[int, int]] = field(default_factory=list)  # (deal row, customer row)
    unmapped_deals: int = 0


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

    # Customers work at organisations (a foreign key); not at the planted duplicates, which
    # never sync.
    org_ids = list(range(1, n_comp + 1))
    for i, c in enumerate(data.app_customers):
        if c.get("email") and "@" in str(c["email"]) and i % 2 == 0:
            c["company_id"] = org_ids[i % len(org_ids)]

    # Deals: app deals across every stage (one in the unmapped stage), a few hub deals.
    n_deals = max(len(DEAL_STAGES) + 1, records // 10)
    valid_customers = [i + 1 for i, c in enumerate(data.app_customers)
                       if c.get("email") and "@" in str(c["email"])
                       and "(duplicate)" not in str(c.get("last_name"))]
    for d in range(n_deals):
        stage = UNMAPPED_STAGE if d == n_deals - 1 else DEAL_STAGES[d % len(DEAL_STAGES)]
        data.app_deals.append({"name": f"{WORDS[d % len(WORDS)]} deal {d}",
                               "amount": round(rnd.uniform(500, 50_000), 2),
                               "close_date": f"2026-{1 + d % 12:02d}-{1 + d % 28:02d}",
                               "pipeline": "sales", "stage": stage,
                               "company_id": org_ids[d % len(org_ids)]})
        data.deal_contacts.append((d + 1, valid_customers[d % len(valid_customers)]))
    data.unmapped_deals = 1
    for d, stage in enumerate(["qualifiedtobuy", "closedwon", "appointmentscheduled"]):
        data.hub_deals.append({"dealname": f"Hub deal {d}", "pipeline": "default",
                               "dealstage": stage, "amount": str(1000 * (d + 1))})

    # Invoices with line items for some customers.
    for k in range(max(3, records // 20)):
        inv_id = k + 1
        data.app_invoices.append({"number": f"INV-{1000 + k}", "currency": rnd.choice(
            ["EUR", "USD", "GBP"]), "invoice_date": f"2026-11-{1 + k % 28:02d}",
            "customer_id": valid_customers[(3 * k) % len(valid_customers)]})
        for line in range(1 + k % 3):
            name, price = PRODUCTS[(k + line) % len(PRODUCTS)]
            data.app_invoice_lines.append({"invoice_id": inv_id, "name": name,
                                           "quantity": 1 + line, "price": price,
                                           "sku": f"INV-{1000 + k}/{line + 1}"})
    return data


def write_app_db(path: Path, data: SampleData) -> None:
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(APP_SCHEMA)
        for table, rows in (("organisations", data.app_organisations),
                            ("customers", data.app_customers),
                            ("opportunities", data.app_deals),
                            ("invoices", data.app_invoices),
                            ("invoice_lines", data.app_invoice_lines)):
            for row in rows:
                cols = list(row)
                conn.execute(f"INSERT INTO {table} ({', '.join(cols)}) VALUES "
                             f"({', '.join('?' * len(cols))})", [row[c] for c in cols])
        conn.executemany("INSERT INTO opportunity_customers VALUES (?, ?)", data.deal_contacts)
        conn.commit()
    finally:
        conn.close()


# The same app in PostgreSQL: identity keys (numbered 1, 2, ... in insertion order, as SQLite's
# rowids, which the sample data's references rely on), real types, jsonb event properties.
PG_APP_SCHEMA = """
CREATE TABLE organisations (
    id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    name text, domain text, city text, phone text, industry text,
    updated_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE customers (
    id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    email text, first_name text, last_name text, phone text, job_title text, company_name text,
    company_id bigint REFERENCES organisations(id),
    updated_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE pipelines (id text PRIMARY KEY, label text);
CREATE TABLE stages (id text PRIMARY KEY, pipeline_id text, label text, display_order int);
CREATE TABLE opportunities (
    id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    name text, amount numeric(14, 2), close_date date, pipeline text, stage text,
    company_id bigint REFERENCES organisations(id),
    updated_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE opportunity_customers (
    opportunity_id bigint REFERENCES opportunities(id),
    customer_id bigint REFERENCES customers(id),
    PRIMARY KEY (opportunity_id, customer_id));
CREATE TABLE invoices (
    id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    number text, currency text, invoice_date date, due_date date,
    customer_id bigint REFERENCES customers(id),
    updated_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE invoice_lines (
    id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    invoice_id bigint REFERENCES invoices(id),
    name text, quantity numeric, price numeric, sku text,
    updated_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE events (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id text, contact_email text, name text, occurred_at timestamptz, properties jsonb);
""" + APP_SCHEMA[APP_SCHEMA.index("INSERT INTO pipelines"):]


def write_pg_app(dsn: str, data: SampleData) -> None:
    """The sample data in a PostgreSQL database (`dsn`: a libpq connection string)."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn, conn.transaction():
        conn.execute(PG_APP_SCHEMA)
        for table, rows in (("organisations", data.app_organisations),
                            ("customers", data.app_customers),
                            ("opportunities", data.app_deals),
                            ("invoices", data.app_invoices),
                            ("invoice_lines", data.app_invoice_lines)):
            for row in rows:
                cols = list(row)
                conn.execute(f"INSERT INTO {table} ({', '.join(cols)}) VALUES "
                             f"({', '.join(['%s'] * len(cols))})", [row[c] for c in cols])
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO opportunity_customers VALUES (%s, %s)",
                            data.deal_contacts)
