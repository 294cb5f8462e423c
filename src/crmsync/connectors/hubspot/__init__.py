"""The HubSpot connector: the hub side of every object sync (see connector.py)."""

from crmsync.connectors.hubspot.auth import HubSpotOAuth, PrivateAppToken
from crmsync.connectors.hubspot.build import budget_for, build_hub_connector, hub_limits
from crmsync.connectors.hubspot.connector import HubSpotConnector
from crmsync.connectors.hubspot.webhooks import (
    WebhookEvent,
    WebhookPayloadError,
    WebhookSignatureError,
    parse_delivery,
    verify_delivery,
)

__all__ = [
    "HubSpotConnector",
    "HubSpotOAuth",
    "PrivateAppToken",
    "WebhookEvent",
    "WebhookPayloadError",
    "WebhookSignatureError",
    "budget_for",
    "build_hub_connector",
    "hub_limits",
    "parse_delivery",
    "verify_delivery",
]
