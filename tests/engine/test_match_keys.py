"""Match keys (DESIGN.md vocabulary, issue 2 §3): normalised email for contacts; company name
*or* domain for companies; a configured unique property otherwise."""

from __future__ import annotations

from typing import Any

import pytest

from crmsync.config.model import FieldMapping, ObjectSync
from crmsync.engine import KeyProblem, compile_rules, match_keys
from crmsync.engine.match_keys import (
    company_keys,
    contact_keys,
    normalize_company_name,
    normalize_domain,
    normalize_email,
)

# --- email ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "email"), [
    ("john.doe@example.com", "john.doe@example.com"),
    ("  John.Doe@Example.COM  ", "john.doe@example.com"),
    ("\tjane@example.org\n", "jane@example.org"),
    ("JANE+newsletter@Sub.Example.co.uk", "jane+newsletter@sub.example.co.uk"),
    ("o'brien@example.ie", "o'brien@example.ie"),
    ("first_last@example-mail.com", "first_last@example-mail.com"),
    ("x@example.museum", "x@example.museum"),
    ("user.name+tag-1@mail.example.travel", "user.name+tag-1@mail.example.travel"),
    ("1234@example.com", "1234@example.com"),
])
def test_valid_emails_are_trimmed_and_lower_cased(raw: str, email: str) -> None:
    assert normalize_email(raw) == email
    assert contact_keys(raw) == contact_keys(email) != ()


@pytest.mark.parametrize("raw", [
    None, "", "   ", "plainaddress", "@example.com", "john@", "john@@example.com",
    "john doe@example.com", "john@exa mple.com", "john@example", "john..doe@example.com",
    ".john@example.com", "john.@example.com", "john@-example.com", "john@example..com",
    "john@example.c", "john@.example.com", "John Doe <john@example.com>",
    "john@example.com,jane@example.com", "a" * 65 + "@example.com",
])
def test_invalid_emails_have_no_key(raw: Any) -> None:
    assert normalize_email(raw) is None
    assert contact_keys(raw) == ()


# --- company name ---------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [
    "Acme", "ACME", "acme", "Acme Inc.", "Acme Inc", "acme, inc", "Acme, Inc.", "ACME INC",
    "  Acme   Inc. ", "Acme Incorporated", "Acme LLC", "Acme L.L.C.", "Acme Ltd.",
    "Acme Limited", "Acme Corp.", "Acme Corporation", "Acme GmbH", "Acme Co.", "The Acme Company",
])
def test_company_names_ignore_case_spacing_and_legal_suffixes(raw: str) -> None:
    assert normalize_company_name(raw) == normalize_company_name("Acme") == "acme"


@pytest.mark.parametrize(("a", "b"), [
    ("Acme", "Acme Labs"), ("Acme Inc.", "Acme Holdings Inc."), ("Globex", "Acme"),
    ("Acme Inc.", "Acme Industries"),
])
def test_different_companies_stay_different(a: str, b: str) -> None:
    assert normalize_company_name(a) != normalize_company_name(b)


@pytest.mark.parametrize("raw", ["Inc.", "LLC", "Company"])
def test_a_name_that_is_only_a_legal_form_is_kept(raw: str) -> None:
    assert normalize_company_name(raw)


@pytest.mark.parametrize("raw", [None, "", "   ", "..."])
def test_empty_company_name_has_no_key(raw: Any) -> None:
    assert normalize_company_name(raw) is None


# --- domain ---------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [
    "acme.com", "ACME.COM", "www.acme.com", "https://www.Acme.com:8080/about",
    "http://acme.com/", "https://acme.com?utm_source=x", "acme.com/contact#form",
    "  https://WWW.ACME.COM  ", "//acme.com", "acme.com.", "https://user:pw@www.acme.com/",
])
def test_domains_are_normalised(raw: str) -> None:
    assert normalize_domain(raw) == "acme.com"


def test_subdomains_other_than_www_are_kept() -> None:
    assert normalize_domain("https://shop.acme.co.uk/cart") == "shop.acme.co.uk"


def test_international_domains_are_normalised_to_punycode() -> None:
    assert normalize_domain("https://www.Bücher.de/") == normalize_domain("xn--bcher-kva.de")


@pytest.mark.parametrize("raw", [None, "", "not a domain", "localhost", "http://", "acme",
                                 "https://"])
def test_invalid_domains_have_no_key(raw: Any) -> None:
    assert normalize_domain(raw) is None


# --- companies match on name OR domain ------------------------------------------------------


def shares_key(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    return bool(set(a) & set(b))


def test_companies_match_on_name_or_domain() -> None:
    acme = company_keys("Acme Inc.", "https://www.acme.com/about")
    assert shares_key(acme, company_keys("ACME", None))  # same name, no domain
    assert shares_key(acme, company_keys("acme, inc", "acme.io"))  # same name, other domain
    assert shares_key(acme, company_keys("Acme Europe B.V.", "acme.com"))  # same domain
    assert shares_key(acme, company_keys(None, "ACME.COM"))  # domain only
    assert not shares_key(acme, company_keys("Globex", "globex.com"))
    assert not shares_key(acme, company_keys("Acme Labs", "acmelabs.com"))


def test_a_company_name_never_matches_a_domain() -> None:
    # A company called "acme.com" and a company whose domain is acme.com are not the same key
    # kind; only a shared name or a shared domain pairs them.
    assert not shares_key(company_keys("acme com", None), company_keys(None, "acme.com"))


def test_company_without_name_or_domain_has_no_key() -> None:
    assert company_keys(None, None) == ()
    assert company_keys("", "not a domain") == ()


# --- the engine's match_keys per object sync --------------------------------------------------


def contacts(**kw: Any) -> ObjectSync:
    return ObjectSync(connection="shop", hub_object="contacts", app_object="customers", **kw)


def test_contact_keys_come_from_the_mapped_email_field() -> None:
    rules = compile_rules(contacts(mappings=[FieldMapping(hub="email", app="email_address")]))
    assert match_keys(rules, "hub", {"email": " Ann@Example.com"}) == match_keys(
        rules, "app", {"email_address": "ann@example.COM "})


@pytest.mark.parametrize(("props", "reason"), [
    ({}, "no_email"), ({"email": ""}, "no_email"), ({"email": "   "}, "no_email"),
    ({"email": None}, "no_email"), ({"email": "ann at example.com"}, "invalid_email"),
])
def test_contacts_without_a_valid_email_have_no_key(props: dict[str, Any], reason: str) -> None:
    rules = compile_rules(contacts())
    with pytest.raises(KeyProblem) as exc:
        match_keys(rules, "hub", props)
    assert exc.value.reason == reason


def test_company_keys_through_the_engine() -> None:
    rules = compile_rules(ObjectSync(
        connection="shop", hub_object="companies", app_object="accounts",
        mappings=[FieldMapping(hub="name", app="company_name"),
                  FieldMapping(hub="domain", app="website")]))
    hub = match_keys(rules, "hub", {"name": "Acme Inc.", "domain": "acme.com"})
    assert shares_key(hub, match_keys(rules, "app", {"company_name": "ACME",
                                                      "website": None}))
    assert shares_key(hub, match_keys(rules, "app", {"company_name": "Acme Europe",
                                                      "website": "https://www.acme.com/"}))
    with pytest.raises(KeyProblem) as exc:
        match_keys(rules, "app", {"company_name": "", "website": ""})
    assert exc.value.reason == "no_unique_id"


def deals_with_unique_property() -> ObjectSync:
    return ObjectSync(
        connection="shop", hub_object="deals", app_object="orders",
        use_default_mappings=False, unique_property="order_number",
        mappings=[FieldMapping(hub="order_number", app="number"),
                  FieldMapping(hub="dealname", app="title")])


def test_unique_property_keys() -> None:
    rules = compile_rules(deals_with_unique_property())
    assert match_keys(rules, "hub", {"order_number": " SO-1001 "}) == match_keys(
        rules, "app", {"number": "SO-1001"})
    assert match_keys(rules, "hub", {"order_number": "1001"}) == match_keys(
        rules, "app", {"number": 1001})
    assert match_keys(rules, "hub", {"order_number": "SO-1001"}) != match_keys(
        rules, "app", {"number": "SO-1002"})


@pytest.mark.parametrize("value", [None, "", "   "])
def test_empty_unique_property_has_no_key(value: Any) -> None:
    rules = compile_rules(deals_with_unique_property())
    with pytest.raises(KeyProblem) as exc:
        match_keys(rules, "app", {"number": value})
    assert exc.value.reason == "no_unique_id"
