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

# The alert sensor reads only the failed evaluations of each asset check; the history
# filter takes this status (no public export in 1.13).
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

Metadata = dict[str, RawMetadataValue]  # what assets and checks attach to their results

__all__ = [
    "BULK_ACTION_TERMINAL_STATUSES",
    "AssetCheckExecutionRecordStatus",
    "BulkActionStatus",
    "BulkActionsFilter",
    "Metadata",
    "PartitionBackfill",
]
