"""Running recordings: the runner (lease → idempotency → work directory → stages → report), leases,
individual-mode users, and the library entry points the CLI and the fleet call::

    from pipeline.run import Request, run
    result = run(Request(location="s3://bucket/recordings", sid="..."), config=..., environ=os.environ)
    print(result.job.status, result.report_key)
"""

from __future__ import annotations

from pipeline.run.app import Request, list_recordings, run
from pipeline.run.runner import Result, run_job

__all__ = ["Request", "Result", "list_recordings", "run", "run_job"]
