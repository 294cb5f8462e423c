"""Which object sync keeps which association type (runtime/associations.py)."""

from __future__ import annotations

from crmsync.config.model import Config, HubSettings, ObjectSync, PrivateAppAuth
from crmsync.runtime.associations import association_pairs


def _config() -> Config:
    return Config(
        hub=HubSettings(auth=PrivateAppAuth(token_env="X")),
        syncs=[ObjectSync(connection="pd", hub_object="contacts", app_object="persons",
                          associations=["companies"]),
               ObjectSync(connection="pd", hub_object="companies", app_object="organizations"),
               ObjectSync(connection="pd", hub_object="deals", app_object="deals",
                          unique_property="dealname", associations=["contacts", "companies"])])


def test_undirected_app_associations_are_kept_from_both_object_syncs():
    cfg = _config()
    pairs = {("persons", "organizations")}
    contacts, companies, _ = cfg.syncs
    assert [(p.hub_a, p.hub_b) for p in association_pairs(cfg, contacts, pairs)] == [
        ("contacts", "companies")]
    assert [(p.hub_a, p.hub_b) for p in association_pairs(cfg, companies, pairs)] == [
        ("companies", "contacts")]


def test_directed_app_associations_are_kept_by_the_object_holding_the_key():
    """Pipedrive keeps an association as a foreign key of one record (person.org_id):
    reading it from the organization costs a list call per organization, so only the
    persons' object sync keeps it."""
    cfg = _config()
    pairs = {("persons", "organizations"), ("deals", "persons"), ("deals", "organizations")}
    contacts, companies, deals = cfg.syncs
    got = {s.hub_object: [(p.hub_a, p.hub_b) for p in association_pairs(cfg, s, pairs,
                                                                          directed=True)]
           for s in (contacts, companies, deals)}
    assert got == {"contacts": [("contacts", "companies")], "companies": [],
                   "deals": [("deals", "contacts"), ("deals", "companies")]}
