"""Alembic migrations of the store's schema (run by ``vmfabric.store.migrate``, never by
hand: there is no alembic.ini). ``versions/`` holds one file per revision, oldest first."""
