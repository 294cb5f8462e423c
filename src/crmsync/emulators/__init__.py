"""Stateful fakes of the real APIs crmsync talks to.

Used by tests, benchmarks and `crmsync demo`; never imported by production code. An emulator
never imports a connector, the runtime, the engine or the store: a fake that shares code with
the client it tests cannot catch that client's mistakes.
"""
