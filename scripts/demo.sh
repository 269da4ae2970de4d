#!/usr/bin/env bash
# `make demo`: run the main job on the embedded defaults (the local emulator) and print what it did.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$PROJECT_DIR"
started_emulator=""
if ! scripts/emulator.sh status >/dev/null 2>&1; then scripts/emulator.sh start; started_emulator=1; fi
trap '[ -n "$started_emulator" ] && scripts/emulator.sh stop >/dev/null' EXIT

log="$AIRFLOW_HOME/demo.log"
echo "Running partner_relationship_create_single with airflow dags test (log: $log) ..."
if ! airflow dags test partner_relationship_create_single >"$log" 2>&1; then
  echo "The DAG run failed; the end of its log:" >&2; tail -40 "$log" >&2; exit 1
fi
grep -E "CreateRelationship .*: (created|already exists)" "$log" | sed -E 's/^.*\] (CreateRelationship[^[]*).*$/  \1/' || true
python - "$EMULATOR_URL" <<'PY'
import json, sys, urllib.request
rows = json.load(urllib.request.urlopen(sys.argv[1] + "/_emulator/relationships"))
print(f"The emulator at {sys.argv[1]} now holds {len(rows)} relationship(s):")
for r in rows:
    print(f"  {r['id']}  {r['associationType']}  {r.get('associatedAccountId', '-')}  {r['displayName']}  {r['arn']}")
PY
