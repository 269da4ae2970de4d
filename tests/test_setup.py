"""The set-up a new user gets from `make`: the project importable by every process of the venv, not only pytest."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).parents[1]


def test_project_modules_import_outside_pytest_from_any_directory(tmp_path):
    probe = "import include.sync.steps, include.partner_central.operators; print('ok')"
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert result.stdout.strip() == "ok", result.stderr[-2000:]
