"""What the SQL app connectors (SQLite, PostgreSQL) do alike around their calls.

Their capabilities (the same for both: a change log, local find, conditional updates, and what
the connection configures), finding a configured table or association by the names the
runtime uses, and counting write results. The calls themselves (threads, transactions, the
change log) are each connector's own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, TypeVar

from crmsync.config.model import PostgresConnection, SqliteConnection
from crmsync.connectors.base import Capabilities, ConnectorError, RecordError, WriteResult

S = TypeVar("S")


class _Ends(Protocol):
    @property
    def object(self) -> str: ...


class AssociationShape(Protocol):
    @property
    def source(self) -> _Ends: ...
    @property
    def target(self) -> _Ends: ...


A = TypeVar("A", bound=AssociationShape)


def capabilities(settings: SqliteConnection | PostgresConnection) -> Capabilities:
    return Capabilities(
        webhooks=bool(settings.webhook_secret_env or settings.webhook_secret_file),
        change_log=True,
        polling=True,
        write_batch_size=settings.batch_size,
        read_batch_size=settings.batch_size,
        pipelines=settings.pipelines is not None,
        associations=bool(settings.associations),
        events=settings.events is not None,
        local_find=True,
        conditional_update=True,
    )


def table_of(connection: str, specs: Mapping[str, S], object_name: str) -> S:
    """The resolved table of an app object; ConnectorError(kind="config") naming it when the
    connection has none."""
    spec = specs.get(object_name)
    if spec is None:
        raise ConnectorError("config", "not_found",
                             f"connection {connection!r} has no app object {object_name!r}")
    return spec


def association_of(connection: str, associations: Sequence[A], from_object: str,
                   to_object: str) -> tuple[A, bool]:
    """The configured association between two app objects, and whether it is read forward
    (from its source); ConnectorError(kind="config") when there is none."""
    for a in associations:
        if (a.source.object, a.target.object) == (from_object, to_object):
            return a, True
    for a in associations:
        if (a.target.object, a.source.object) == (from_object, to_object):
            return a, False
    raise ConnectorError("config", "association_failed",
                         f"connection {connection!r} has no association between "
                         f"{from_object!r} and {to_object!r}")


def not_configured(connection: str, what: str, section: str) -> ConnectorError:
    """The error of a call needing a part of the connection it does not configure."""
    return ConnectorError("config", "not_found",
                          f"connection {connection!r} has no {what} configured ({section})")


def write_results(results: Sequence[Any]) -> tuple[list[WriteResult], int]:
    """A batch's results (a record, or a RecordError) as WriteResults, and how many failed."""
    out = [WriteResult(ok=False, error=r) if isinstance(r, RecordError)
           else WriteResult(ok=True, record=r) for r in results]
    return out, sum(1 for r in out if not r.ok)
