"""`python -m service.worker`: the documented entry point of the training-job worker, and
`heartbeat_is_fresh()` its container health check; both live in service.jobs.job_worker."""

from __future__ import annotations

import sys

from service.jobs.job_worker import heartbeat_is_fresh, main

__all__ = ["heartbeat_is_fresh", "main"]

if __name__ == "__main__":
    sys.exit(main())
