"""The incident store's schema migrations (Alembic, packaged): the same revisions run on SQLite and PostgreSQL."""
