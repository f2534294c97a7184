"""A faithful, in-memory Mahak Sync API for tests and demos (see `shared/mahak-api.md`).

`SimulatorServer` runs it in-process; `mahak-sync simulator` runs it as a process;
`SimControl` drives its control API.
"""

from .config import SimulatorConfig
from .control import SimControl, SimControlError
from .faults import FaultSpec
from .server import SimulatorServer

__all__ = ["FaultSpec", "SimControl", "SimControlError", "SimulatorConfig", "SimulatorServer"]
