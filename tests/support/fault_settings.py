"""Settings for the processes fault tests start on private Postgres and Redis (tests/support/faults.py).

The test settings, plus a delivery log in every worker and the test-only actors in tests.support.fault_actors.
"""

import os
import tempfile
from pathlib import Path

from tests.settings import *  # noqa: F403
from tests.settings import DRAMATIQ_AUTODISCOVER_MODULES, DRAMATIQ_BROKER, INSTALLED_APPS

# "tests" as an app so that rundramatiq discovers tests/support/fault_actors.py.
INSTALLED_APPS = [*INSTALLED_APPS, "tests"]
DRAMATIQ_AUTODISCOVER_MODULES = [*DRAMATIQ_AUTODISCOVER_MODULES, "support.fault_actors"]
DRAMATIQ_BROKER["MIDDLEWARE"] = [*DRAMATIQ_BROKER["MIDDLEWARE"], "tests.support.delivery_log.DeliveryLog"]
# Each private stack keeps its own vector index cache (Stack.env sets FAULT_STACK_DIR).
VECTOR_INDEX_PATH = Path(os.environ.get("FAULT_STACK_DIR", tempfile.gettempdir())) / "vector-index.npz"
