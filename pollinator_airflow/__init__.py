"""Airflow provider for Pollinator: run an Airflow step as a ColonyOS job on HPC or Kubernetes.

The classes are loaded lazily so that Airflow's provider discovery (which
imports ``pollinator_airflow.provider`` in every process) never pays for
importing Airflow's operator machinery or Pollinator's core.
"""

from __future__ import annotations

import importlib
from typing import Any

from pollinator_airflow.version import __version__

_LAZY = {
    "PollinatorHook": "pollinator_airflow.hooks",
    "PollinatorOperator": "pollinator_airflow.operators",
    "PollinatorTrigger": "pollinator_airflow.triggers",
    "PollinatorSensor": "pollinator_airflow.sensors",
    "PollinatorProcessLink": "pollinator_airflow.links",
    "pollinator_task": "pollinator_airflow.decorators",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pollinator_airflow' has no attribute {name!r}")
