"""Actors: supervisor, initial sync, pollers, webhook intake, sync workers, record lock queue,
batch writers. Trio tasks talking over memory channels and the store; no decision logic here
(that is the engine's)."""
