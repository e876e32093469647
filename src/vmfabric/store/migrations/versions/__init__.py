"""One module per schema revision (loaded by Alembic from this folder)."""
