"""The README's first command, for real: `scripts/demo.py` (what `make demo` runs) ends with every step SUCCESS."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.airflow
@pytest.mark.prefect
def test_demo_runs_every_step_to_success(tmp_path):
    pytest.importorskip("airflow.sdk", reason="the demo runs an Airflow DAG: pip install 'pollinator[airflow]'")
    pytest.importorskip("prefect.flows", reason="the demo runs a Prefect flow: pip install 'pollinator[prefect]'")
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "demo.py")], cwd=ROOT, capture_output=True,
                         text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    text = out.stdout
    assert "every step SUCCESS" in text
    assert "preprocess: wrote" in text  # a remote log line streamed through Airflow
    assert "train: epoch" in text  # and through Prefect
    # the asset pair: a real scheduler made and ran the train runs from preprocess's events; the one that
    # started after the label moved on read its event's pinned bytes
    assert "airflow scheduler (pid" in text and "its task log (LocalExecutor): train: slope=" in text
    assert "byte-identical to that run's train.csv (the label had moved on" in text
    assert "[chain] every check holds" in text
    for engine in ("airflow", "prefect"):
        assert engine in text.split("ColonyOS processes of this demo", 1)[1]
