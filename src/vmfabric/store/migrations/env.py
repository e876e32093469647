"""Alembic's environment for the store: migrate on the connection the Store hands over.

``vmfabric.store.migrate`` puts the connection in ``config.attributes["connection"]``
inside the Store's write transaction (SQLite: ``BEGIN IMMEDIATE``), so an upgrade commits
as a whole with the version stamp, or not at all. SQLite alters tables in batch mode
(copy and rename), which Alembic does only where SQLite cannot ``ALTER`` in place.
"""

from __future__ import annotations

from alembic import context

from vmfabric.store.schema import metadata


def run() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("vmfabric's store migrations run inside vmfabric (open the Store)")
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


run()
