"""The Temporal worker: runs every workflow and activity of mahak-sync on one task queue.

    python worker.py            # TEMPORAL_ADDRESS, DATABASE_URL, MAHAK_* from the environment

Start-up order: settings -> shop database (migrated when MIGRATE_ON_START) -> Mahak client ->
activity instances -> worker (`mahak_sync.runtime`). SIGINT/SIGTERM drain in-flight tasks and
exit cleanly.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import sys

from mahak_sync.runtime import main

if __name__ == "__main__":
    status = asyncio.run(main())
    # Exit without interpreter teardown, which the Temporal core's threads can crash (SIGSEGV
    # or SIGABRT instead of the status: temporalio/sdk-python#300). atexit handlers run first.
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
