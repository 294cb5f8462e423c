"""An in-memory emulator of Pipedrive's API (ASGI), faithful to
`shared/reference/pipedrive-api.md`.

    from crmsync.emulators.pipedrive import PipedriveEmulator, Faults
    emu = PipedriveEmulator(tokens=("test-token",), plan="professional")
    transport = httpx.ASGITransport(app=emu.app)  # base URL + "/api/v2/persons"
"""

from .emulator import PipedriveEmulator
from .faults import Faults

__all__ = ["Faults", "PipedriveEmulator"]
