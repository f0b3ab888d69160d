"""A local colony whose dev-hpc executor runs jobs on a real one-node Slurm cluster (for the session)."""

from __future__ import annotations

import os

import pytest

from pollinator.dev.slurm_cluster import INSTALL_HINT, find_binary


@pytest.fixture(scope="session")
def slurm_colony(tmp_path_factory):
    """LocalColony(slurm=True): munged + slurmctld + slurmd on localhost, dev-hpc with --backend slurm."""
    if find_binary("slurmctld") is None:
        pytest.skip(f"slurmctld is not installed, so there is no Slurm to test against ({INSTALL_HINT})")
    if os.geteuid() != 0:
        pytest.skip("the local Slurm cluster runs its daemons as root; these tests need root")
    from pollinator.dev.colony import LocalColony

    # lenient, as the local colony's dev executors are by default
    colony = LocalColony(tmp_path_factory.mktemp("slurm-colony"), max_jobs=4, slurm=True, strict=False)
    colony.start()
    try:
        yield colony
    finally:
        colony.stop()


@pytest.fixture(scope="session")
def slurm_settings(slurm_colony):
    return slurm_colony.settings()


@pytest.fixture(scope="session")
def cluster(slurm_colony):
    return slurm_colony.slurm_cluster()
