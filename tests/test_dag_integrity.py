"""Every DAG file imports cleanly and fast, and every DAG has tags, an owner and retries."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag

DAGS_FOLDER = Path(__file__).parents[1] / "dags"
DAG_FILES = sorted(DAGS_FOLDER.glob("*.py"))
HEAVY_MODULES = ("great_expectations", "pandas", "psycopg2")


@pytest.fixture(scope="module")
def dagbag() -> DagBag:
    return DagBag(dag_folder=DAGS_FOLDER)


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert len(dagbag.dags) == len(DAG_FILES)


def test_every_dag_has_tags_an_owner_and_retries(dagbag):
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, f"{dag_id} has no tags"
        for task in dag.tasks:
            assert task.owner not in ("", "airflow"), f"{dag_id}.{task.task_id} has no owner"
            assert task.retries >= 1, f"{dag_id}.{task.task_id} has no retries"


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda path: path.name)
def test_dag_file_imports_nothing_heavy(dag_file):
    probe = (
        f"import runpy, sys; runpy.run_path({str(dag_file)!r}); "
        f"print(','.join(m for m in {HEAVY_MODULES!r} if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.strip().splitlines()[-1:] in ([], [""]), f"{dag_file.name} imports {loaded.strip()}"


def test_the_mode_param_offers_exactly_the_sync_modes(dagbag):
    # Written out in the DAG file, which must not import the vocabulary (botocore) at parse time.
    from include.vocabulary import SYNC_MODES

    param = dagbag.get_dag("partner_relationship_sync").params.get_param("mode")
    assert param.schema["enum"] == [None, *SYNC_MODES]
