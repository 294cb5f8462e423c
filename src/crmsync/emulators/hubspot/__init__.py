"""An in-memory emulator of HubSpot's CRM API (ASGI), faithful to
`shared/reference/hubspot-api.md`.

    from crmsync.emulators.hubspot import HubSpotEmulator, Faults
    emu = HubSpotEmulator(tokens=("test-token",), tier="professional")
    transport = httpx.ASGITransport(app=emu.app)
"""

from .app import SERVER_REQUEST_ROOM
from .emulator import HubSpotEmulator
from .faults import Faults

__all__ = ["SERVER_REQUEST_ROOM", "Faults", "HubSpotEmulator"]
