"""OpenLineage for a Pollinator task: its mounted inputs and its results as datasets pinned by snapshot.

Dataset naming follows the asset URIs (:mod:`pollinator_airflow.assets`):
namespace ``colonyfs://<colony>``, name the ColonyFS label; the snapshot id is
the dataset's version (OpenLineage's standard ``version`` facet), so a
backend links "train read snapshot S of /pollinator/prep/runs/R/result" to
"preprocess wrote snapshot S there": cloud -> HPC lineage across DAGs.

:func:`lineage_plan` is plain data (tested without OpenLineage);
:func:`operator_lineage` turns it into the provider's classes and is only
called by the OpenLineage provider, so it imports them lazily: the
``airflow`` extra installs apache-airflow-providers-openlineage, but an
Airflow without it runs the operator the same, only unobserved.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

from pollinator_airflow.assets import SCHEME


def lineage_plan(colony: str, input_mounts: Mapping[str, tuple[str, str]],
                 record: Optional[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """``{"inputs": [...], "outputs": [...]}``; each dataset ``{namespace, name, version, facets}``."""
    namespace = f"{SCHEME}://{colony}"
    inputs = [{"namespace": namespace, "name": label, "version": snapshot_id, "input": name}
              for name, (label, snapshot_id) in sorted(input_mounts.items())]
    outputs = []
    if record and record.get("snapshot_id"):
        outputs.append({"namespace": namespace, "name": record["label"], "version": record["snapshot_id"],
                        "files": record.get("files_total", len(record.get("files", [])))})
    return {"inputs": inputs, "outputs": outputs}


def operator_lineage(plan: Mapping[str, list[dict[str, Any]]]) -> Any:
    """The OpenLineage provider's ``OperatorLineage`` for ``plan`` (needs apache-airflow-providers-openlineage)."""
    from airflow.providers.common.compat.openlineage.facet import Dataset, DatasetFacet
    from airflow.providers.openlineage.extractors import OperatorLineage

    def dataset(d: Mapping[str, Any]) -> Any:
        facets: dict[str, DatasetFacet] = {}
        if d.get("version"):
            from openlineage.client.generated.dataset_version_dataset import DatasetVersionDatasetFacet

            facets["version"] = DatasetVersionDatasetFacet(datasetVersion=d["version"])
        return Dataset(namespace=d["namespace"], name=d["name"], facets=facets)

    return OperatorLineage(inputs=[dataset(d) for d in plan["inputs"]],
                           outputs=[dataset(d) for d in plan["outputs"]])
