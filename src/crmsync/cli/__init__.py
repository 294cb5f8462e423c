"""Command-line entry points: `crmsync run | check-config | demo | ctl ... | emulator ...`."""
