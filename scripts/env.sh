# Environment of the local project: Airflow home inside the checkout, the emulator and the SQLite warehouse as
# default connections. Source it (`source scripts/env.sh`) to run `airflow ...` by hand. The Airflow home and the
# DAGs and plugins folders are always this checkout's (an AIRFLOW_HOME set for another project must not leak in);
# the connections and other settings already in your environment win, so the same commands can point at real AWS
# or a real warehouse.
PROJECT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PROJECT_DIR
export AIRFLOW_HOME="$PROJECT_DIR/.airflow"
export AIRFLOW__CORE__DAGS_FOLDER="$PROJECT_DIR/dags"
export AIRFLOW__CORE__PLUGINS_FOLDER="$PROJECT_DIR/plugins"
export AIRFLOW__CORE__LOAD_EXAMPLES="${AIRFLOW__CORE__LOAD_EXAMPLES:-False}"
export AIRFLOW__LOGGING__BASE_LOG_FOLDER="$AIRFLOW_HOME/logs"
export EMULATOR_PORT="${EMULATOR_PORT:-4566}"
export EMULATOR_URL="${EMULATOR_URL:-http://127.0.0.1:$EMULATOR_PORT}"
# The emulator accepts any credentials; these only name the emulated AWS account.
_emulator_conn='{"conn_type": "aws", "login": "AKIALOCALEMULATOR01", "password": "local-emulator-secret", "extra": {"endpoint_url": "'"$EMULATOR_URL"'", "region_name": "us-east-1"}}'
_sqlite_conn='{"conn_type": "sqlite", "host": "'"$AIRFLOW_HOME/warehouse.db"'"}'
export AIRFLOW_CONN_AWS_DEFAULT="${AIRFLOW_CONN_AWS_DEFAULT:-$_emulator_conn}"
export AIRFLOW_CONN_PARTNER_WAREHOUSE="${AIRFLOW_CONN_PARTNER_WAREHOUSE:-$_sqlite_conn}"
unset _emulator_conn _sqlite_conn
export PATH="$PROJECT_DIR/.venv/bin:$PATH"
