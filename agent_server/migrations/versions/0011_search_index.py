"""search index: forms of skills and languages an index can answer

Revision ID: 0011
Revises: 0010

``specialist_skills`` and ``specialist_languages`` hold one row per skill (language) of a
specialist, so a search filter is an index look-up instead of reading each walked
specialist's JSON array, and facets count skills with a GROUP BY over an index. Triggers on
``specialists`` keep them equal to the ``skills`` and ``languages`` columns, whatever code
writes them (on SQLite through ``json_each``, on PostgreSQL through
``json_array_elements_text``); rows go with their specialist.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
FORMS = {'specialist_skills': ('skill', 'skills'), 'specialist_languages': ('language', 'languages')}

PG_FUNCTION = """
CREATE OR REPLACE FUNCTION {table}_sync() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        DELETE FROM {table} WHERE specialist_id = NEW.id;
    END IF;
    INSERT INTO {table} ({value}, specialist_id)
    SELECT DISTINCT v, NEW.id FROM json_array_elements_text(NEW.{column}) AS v;
    RETURN NULL;
END $$;
"""


def upgrade() -> None:
    for table, (value, column) in FORMS.items():
        op.create_table(
            table,
            sa.Column(value, sa.Text(), nullable=False),
            sa.Column('specialist_id', ID, nullable=False),
            sa.ForeignKeyConstraint(
                ['specialist_id'], ['specialists.id'],
                name=op.f(f'fk_{table}_specialist_id_specialists'), ondelete='CASCADE',
            ),
            sa.PrimaryKeyConstraint(value, 'specialist_id', name=op.f(f'pk_{table}')),
        )
        op.create_index(f'ix_{table}_specialist', table, ['specialist_id', value])
        if op.get_bind().dialect.name == 'postgresql':
            op.execute(PG_FUNCTION.format(table=table, value=value, column=column))
            op.execute(
                f'CREATE TRIGGER {table}_sync AFTER INSERT OR UPDATE OF {column} ON specialists '
                f'FOR EACH ROW EXECUTE FUNCTION {table}_sync()'
            )
            source = f'json_array_elements_text(s.{column}) AS v'
        else:
            fill = (
                f'INSERT INTO {table} ({value}, specialist_id) '
                f'SELECT DISTINCT value, NEW.id FROM json_each(NEW.{column});'
            )
            op.execute(
                f'CREATE TRIGGER {table}_insert AFTER INSERT ON specialists BEGIN {fill} END'
            )
            op.execute(
                f'CREATE TRIGGER {table}_update AFTER UPDATE OF {column} ON specialists BEGIN '
                f'DELETE FROM {table} WHERE specialist_id = NEW.id; {fill} END'
            )
            op.execute(
                f'CREATE TRIGGER {table}_delete AFTER DELETE ON specialists BEGIN '
                f'DELETE FROM {table} WHERE specialist_id = OLD.id; END'
            )
            source = f'json_each(s.{column}) AS v'
        v = 'v' if op.get_bind().dialect.name == 'postgresql' else 'v.value'
        op.execute(
            f'INSERT INTO {table} ({value}, specialist_id) '
            f'SELECT DISTINCT {v}, s.id FROM specialists AS s, {source}'
        )


def downgrade() -> None:
    for table, (_value, _column) in FORMS.items():
        if op.get_bind().dialect.name == 'postgresql':
            op.execute(f'DROP TRIGGER IF EXISTS {table}_sync ON specialists')
            op.execute(f'DROP FUNCTION IF EXISTS {table}_sync()')
        else:
            for event in ('insert', 'update', 'delete'):
                op.execute(f'DROP TRIGGER IF EXISTS {table}_{event}')
        op.drop_index(f'ix_{table}_specialist', table_name=table)
        op.drop_table(table)
