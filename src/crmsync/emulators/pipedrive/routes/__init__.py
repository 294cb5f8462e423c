"""HTTP handlers per API family; `admin.py` is the emulator's own `/_emulator/` API."""
