"""The only module that imports Dagster's private API (`dagster._core`).

Each name below has no public equivalent in Dagster 1.13; keeping them here means
an upgrade that moves them breaks one file, not the sensors that use them.
"""

# Typing only: the values Dagster accepts as asset, check and run metadata.
from dagster._core.definitions.metadata import RawMetadataValue
from dagster._core.execution.backfill import (
    # The backfill-sessions sensor lists finished backfills (`instance.get_backfills`
    # takes this filter) and reads each one's status, tags and asset selection.
    BULK_ACTION_TERMINAL_STATUSES,
    BulkActionsFilter,
    BulkActionStatus,
    PartitionBackfill,
)

Metadata = dict[str, RawMetadataValue]  # what assets and checks attach to their results

__all__ = [
    "BULK_ACTION_TERMINAL_STATUSES",
    "BulkActionStatus",
    "BulkActionsFilter",
    "Metadata",
    "PartitionBackfill",
]
