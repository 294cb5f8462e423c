"""crmsync: keeps a HubSpot account and other apps in sync, record by record."""

__version__ = "0.1.0"
