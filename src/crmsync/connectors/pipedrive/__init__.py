"""The Pipedrive connector (API v2): persons, organizations, deals, pipelines, associations,
webhooks v2. See connector.py."""

from crmsync.connectors.pipedrive.connector import PipedriveConnector, WebhookInfo
from crmsync.connectors.pipedrive.webhooks import PipedriveReceiver

__all__ = ["PipedriveConnector", "PipedriveReceiver", "WebhookInfo"]
