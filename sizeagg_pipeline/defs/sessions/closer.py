"""The one way to end a session that did not complete.

The session step, the gate, the backfill closer, the failure sensors, the janitor
and `sizeagg run` each decide an `Outcome` (failed or cancelled, and why) and hand
it here. Ending is idempotent and safe under races: the execution's writers are
serialised, an open session is finalised (a finished one is left alone), and an
execution that never opened a session gets exactly one, born ended.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from ...core import sessions
from ...core.sessions import Outcome
from .executions import Execution


@dataclass(frozen=True)
class Ended:
    session_id: str
    changed: bool  # False: the session had already ended; nothing was written

    def __str__(self) -> str:
        return f"session {self.session_id}" + ("" if self.changed else " (had already ended)")


def end_session(
    engine: sa.Engine, execution: Execution, outcome: Outcome, *, session_id: str | None = None
) -> Ended:
    """End `execution`'s session with `outcome`, writing it if it was never opened.

    `session_id` names the session when the caller knows it (the session step, the
    janitor); otherwise it is found by the execution.
    """
    with engine.begin() as conn:
        sessions.lock_execution(conn, execution.id)
        session_id = session_id or sessions.session_for_execution(conn, execution.id)
        if session_id is not None:
            return Ended(session_id, sessions.finalise_session(conn, session_id, outcome))
        written = sessions.record_failed_execution(
            conn, sync_type=execution.sync_type, outcome=outcome, details=execution.details()
        )
        return Ended(written, True)
