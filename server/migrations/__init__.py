"""The schema's history: alembic revisions, `0001` (the tables before alembic) onwards.

`flowc.server.schema` runs them in-process, configured in code (there is no alembic.ini):
`env.py` gets the connection it opened.  A new revision, written against a database at
the current head and checked by `tests/server/test_migrations.py`::

    .venv/bin/python -c "from alembic import command; from flowc.server import schema; \
        command.revision(schema.alembic_config('sqlite+aiosqlite:///./flowc.db'), \
        'Steps record their duration', autogenerate=True, rev_id='0003')"

then read and correct what autogenerate wrote (it cannot see renames, nor fill a new
NOT NULL column; `ruff check --fix` and `ruff format` tidy it), and set
`flowc.server.schema.HEAD` to the new id.
"""
