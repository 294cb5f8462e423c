"""The PostgreSQL app connector: each app object is a table of the app's PostgreSQL database.

    async with PostgresAppConnector(settings, base_dir=...).open() as app:
        page = await app.scan("customers", None, [])

It offers what the SQLite connector offers — tables as objects, associations through a
foreign key or a join table, pipelines and stages tables, an events table, echo recognition,
the match key written on every create — on a database that belongs to someone else:

- `dsn.py`: the connection string from `dsn_file` / `dsn_env` (never logged; libpq's passfile
  honoured);
- `schema.py`: tables resolved from the catalogs, keys of any type, values in and out;
- `capture.py`: the change log, its triggers, reading by acknowledgement, uninstalling;
- `rows.py` / `relations.py`: units of work (batched writes, one transaction per batch);
- `errors.py`: SQLSTATE → what a failure means; `listen.py`: LISTEN under Trio;
- `connector.py`: the Connector itself, on a worker thread.

What crmsync needs from the database (README, "Sync with PostgreSQL"): SELECT, INSERT, UPDATE,
DELETE on the synced tables; TRIGGER on them (or their ownership); CREATE on the database once,
or a schema `crmsync` created for crmsync's role. A missing one is a config error naming the
GRANT.
"""

from __future__ import annotations

from crmsync.connectors.postgres.capture import RemovalPlan
from crmsync.connectors.postgres.connector import (
    PostgresAppConnector,
    PostgresConnectorStatistics,
)
from crmsync.connectors.postgres.dsn import Dsn, parse_dsn, read_dsn

__all__ = [
    "Dsn",
    "PostgresAppConnector",
    "PostgresConnectorStatistics",
    "RemovalPlan",
    "parse_dsn",
    "read_dsn",
]
