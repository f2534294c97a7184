"""Start and poke mahak-sync's long-running workflows (the deployment's one-shot starter).

    python starter.py incoming [--interval SECONDS] [--page-size N] [--paused]
    python starter.py sync-now
    python starter.py sweep             # the safety net that syncs paid orders a callback missed
    python starter.py order ORDER_ID    # sync one paid order (attaches to a running sync)

Each verb is a `mahak-sync` command under another name (`sync start`, `sync now`, `order sweep`,
`order start`), parsed and run by the same code. `incoming` is idempotent: it starts
`mahak-incoming-sync`, or attaches to the running one (whose own state then wins).
"""

from __future__ import annotations

import sys

from mahak_sync import cli

VERBS = {
    "incoming": ["sync", "start"],
    "sync-now": ["sync", "now"],
    "sweep": ["order", "sweep"],
    "order": ["order", "start"],
}


def translate(argv: list[str]) -> list[str]:
    """`starter.py VERB ARGS` as the `mahak-sync` command it names (unknown verbs pass on, so
    `mahak-sync` reports them with its own usage)."""
    if argv and argv[0] in VERBS:
        return [*VERBS[argv[0]], *argv[1:]]
    return argv


if __name__ == "__main__":
    cli.main(translate(sys.argv[1:]))
