"""The local Airflow's settings file (the Astro CLI's airflow_settings.yaml): its pools, connections and variables.

python -m dev.local_stack.settings FILE   loads them into the metadata database of the environment's Airflow home
                                          (the stack runs it at every start, in the stack's environment)
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from dev import PROJECT_DIR

Settings = dict[str, dict[str, dict[str, Any]]]


def read_settings(path: Path, known: dict[str, str]) -> Settings:
    """The file's pools, connections and variables by name, with ${NAME} replaced from `known`."""
    import yaml

    raw = yaml.safe_load(path.read_text()) or {}
    section = raw.get("airflow") or {}

    def expand(value: Any) -> Any:
        if isinstance(value, str):
            expanded = re.sub(r"\$\{(\w+)\}", lambda match: known.get(match[1], match[0]), value)
            if unset := re.findall(r"\$\{(\w+)\}", expanded):
                raise ValueError(f"{path}: {value!r} uses ${{{unset[0]}}}, which is not set")
            return expanded
        if isinstance(value, dict):
            return {key: expand(item) for key, item in value.items()}
        return value

    result: Settings = {}
    for kind, key in (("pools", "pool_name"), ("connections", "conn_id"), ("variables", "variable_name")):
        entries = section.get(kind) or []
        for entry in entries:
            if not isinstance(entry, dict) or not entry.get(key):
                raise ValueError(f"{path}: every entry of airflow.{kind} needs a {key}: {entry!r}")
        result[kind] = {entry[key]: expand(entry) for entry in entries}
    return result


def stack_variables(home: Path, emulator_url: str) -> dict[str, str]:
    """What a settings file may refer to besides the environment: ${PROJECT_DIR}, ${AIRFLOW_HOME}, ${EMULATOR_URL}."""
    return {"PROJECT_DIR": str(PROJECT_DIR), "AIRFLOW_HOME": str(home), "EMULATOR_URL": emulator_url}


def apply_settings(path: Path) -> None:
    """Load the settings file's pools, connections and variables into the metadata database (run in the stack's
    environment: it imports Airflow)."""
    from airflow.models import Connection, Pool, Variable
    from airflow.utils.session import create_session

    variables = stack_variables(Path(os.environ["AIRFLOW_HOME"]), os.environ["EMULATOR_URL"])
    settings = read_settings(path, {**os.environ, **variables})
    for name, pool in settings["pools"].items():
        Pool.create_or_update_pool(
            name, int(pool.get("pool_slot", 1)), pool.get("pool_description", ""), include_deferred=False
        )
    with create_session() as session:
        for conn_id, item in settings["connections"].items():
            session.query(Connection).filter(Connection.conn_id == conn_id).delete()
            extra = item.get("conn_extra")
            session.add(
                Connection(
                    conn_id=conn_id,
                    conn_type=item.get("conn_type"),
                    host=item.get("conn_host"),
                    schema=item.get("conn_schema"),
                    login=item.get("conn_login"),
                    password=item.get("conn_password"),
                    port=item.get("conn_port"),
                    extra=json.dumps(extra) if isinstance(extra, dict) else extra,
                )
            )
    for name, item in settings["variables"].items():
        Variable.set(name, str(item.get("variable_value", "")))
    print(
        f"loaded {path}: pools {list(settings['pools'])}, connections {list(settings['connections'])}, "
        f"variables {list(settings['variables'])}"
    )


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: python -m dev.local_stack.settings FILE\n\n{__doc__}")
    apply_settings(Path(sys.argv[1]))
