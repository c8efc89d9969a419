"""drift ids up to 256 characters; a compact, indexed similarity profile per data version

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_EPS = 1e-9


def _profile(stats: dict[str, Any], features: list[str]) -> bytes:
    # Frozen copy of driftline.lifecycle_store.similarity.profile_bytes as of this revision.
    means, log_stds = [], []
    for name in features:
        entry = stats.get(name) or {}
        mean, std = entry.get("mean"), entry.get("std")
        means.append(float(mean) if mean is not None else 0.0)
        log_stds.append(math.log((float(std) if std is not None else 0.0) + _EPS))
    return np.asarray(means + log_stds, dtype="<f8").tobytes()


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def upgrade() -> None:
    with op.batch_alter_table("drift_events", schema=None) as batch_op:
        batch_op.alter_column(
            "drift_id",
            existing_type=sa.String(length=100),
            type_=sa.String(length=256),
            existing_nullable=False,
        )
    with op.batch_alter_table("data_versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("profile", sa.LargeBinary(), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_data_versions_pipeline_id_id_profile"),
            ["pipeline_id", "id", "profile"],
            unique=False,
        )
    conn = op.get_bind()
    rows = conn.execute(
        sa.text(
            "SELECT d.id, d.stats, p.feature_names FROM data_versions d "
            "JOIN pipelines p ON p.id = d.pipeline_id WHERE d.coreset IS NOT NULL"
        )
    ).all()
    update = sa.text("UPDATE data_versions SET profile = :profile WHERE id = :id")
    for dv_id, stats, features in rows:
        profile = _profile(_json(stats), list(_json(features)))
        conn.execute(update, {"profile": profile, "id": dv_id})


def downgrade() -> None:
    with op.batch_alter_table("data_versions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_data_versions_pipeline_id_id_profile"))
        batch_op.drop_column("profile")
    with op.batch_alter_table("drift_events", schema=None) as batch_op:
        batch_op.alter_column(
            "drift_id",
            existing_type=sa.String(length=256),
            type_=sa.String(length=100),
            existing_nullable=False,
        )
