"""registry: the SHA-256 of each file of a version, recorded at registration

Checked before a pickled file (a tfidf model's joblib) is loaded, so a file swapped in the models
folder after registration is refused instead of unpickled. NULL on versions registered earlier.

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:
        batch.add_column(sa.Column("files_sha256", sa.JSON))


def downgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:
        batch.drop_column("files_sha256")
