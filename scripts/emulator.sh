#!/usr/bin/env bash
# Start or stop the local Partner Central emulator in the background: scripts/emulator.sh start|stop|status
# Extra arguments after `start` go to the emulator (python -m dev.emulator --help lists them).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
pid_file="$AIRFLOW_HOME/emulator.pid"
log_file="$AIRFLOW_HOME/emulator.log"

healthy() { python - "$EMULATOR_URL" <<'PY'
import sys, urllib.request
try:
    urllib.request.urlopen(sys.argv[1] + "/_emulator/health", timeout=1).read()
except OSError:
    sys.exit(1)
PY
}

case "${1:-}" in
  start)
    shift
    mkdir -p "$AIRFLOW_HOME"
    if healthy; then echo "emulator already running at $EMULATOR_URL"; exit 0; fi
    cd "$PROJECT_DIR"
    nohup python -m dev.emulator --port "$EMULATOR_PORT" "$@" >"$log_file" 2>&1 &
    echo $! >"$pid_file"
    for _ in $(seq 50); do
      if healthy; then echo "emulator running at $EMULATOR_URL (log: $log_file)"; exit 0; fi
      sleep 0.2
    done
    echo "emulator did not start; its log ($log_file):" >&2; cat "$log_file" >&2; exit 1 ;;
  stop)
    if [ -f "$pid_file" ]; then kill "$(cat "$pid_file")" 2>/dev/null || true; rm -f "$pid_file"; fi
    echo "emulator stopped" ;;
  status)
    if healthy; then echo "emulator running at $EMULATOR_URL"; else echo "emulator not running"; exit 1; fi ;;
  *) echo "usage: $0 start [emulator options]|stop|status" >&2; exit 2 ;;
esac
