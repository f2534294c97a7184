"""The Mahak simulator as its own OS process, with a seeded fault injector.

    python -m tests.resilience.sim_proc --port P --password PW --fault-seed N --seed-products N

Prints `ready <root url>` once it answers; serves until SIGTERM/SIGINT (or SIGKILL).
(`mahak-sync simulator` does the same but cannot pin the fault dice's seed.)
"""

from __future__ import annotations

import argparse
import signal
import threading

from pydantic import SecretStr

from mahak_simulator import SimulatorConfig, SimulatorServer


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--fault-seed", type=int, required=True)
    parser.add_argument("--seed-products", type=int, default=0)
    args = parser.parse_args()
    config = SimulatorConfig(
        port=args.port,
        password=SecretStr(args.password),
        fault_seed=args.fault_seed,
        seed_products=args.seed_products,
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    server = SimulatorServer(config).start()
    try:
        print(f"ready {server.root_url}", flush=True)
        while not stop.wait(0.5):
            if not server.running:
                return 1
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
