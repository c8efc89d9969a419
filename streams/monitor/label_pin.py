"""The label kind a monitor accepts: pinned by the config, else by the first label archived.

A string label after integer labels made every later read of the archive's labels fail
(``int64 vs string``). The monitor now accepts labels of one kind per pipeline
(`driftline.lifecycle_store.label_types`): numbers when the config says the task is
regression, else the kind of the first label archived (read back from the archive after a
restart), else — before any label is archived — the kind of the first label it decodes. A label
of the other kind becomes a ``label_type_mismatch`` dead letter.

>>> from driftline.config.pipeline import PipelineConfig
>>> pin = LabelKindPin(PipelineConfig.from_dict({"name": "p", "label": {"task": "regression"}}),
...                    lambda: None)
>>> pin.kind()
'number'
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pyarrow as pa

from driftline.lifecycle_store.exceptions import NotFoundError
from driftline.lifecycle_store.label_types import LabelKind, archived_label_kind, label_kind

if TYPE_CHECKING:
    from driftline.config.pipeline import PipelineConfig
    from driftline.lifecycle_store.archive import Archive

__all__ = ["LabelKindPin"]


class LabelKindPin:
    """The pipeline's label kind once known; ``archive`` returns the archive if it exists."""

    def __init__(self, config: PipelineConfig, archive: Callable[[], Archive | None]) -> None:
        self._archive = archive
        self._kind: LabelKind | None = "number" if config.label.task == "regression" else None

    def kind(self) -> LabelKind | None:
        """The pinned kind, or None while no label has been seen (or archived)."""
        if self._kind is None:
            try:
                archive = self._archive()
            except NotFoundError:
                archive = None
            if archive is not None:
                self._kind = archived_label_kind(archive)
        return self._kind

    def observe(self, table: pa.Table | None) -> None:
        """Labels accepted: the first ones pin the kind (all of a table share it)."""
        if self._kind is None and table is not None and table.num_rows:
            self._kind = label_kind(table.schema.field("label").type)
