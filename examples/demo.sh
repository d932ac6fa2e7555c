#!/usr/bin/env bash
# The Quick Example in one command: start a server (embedded SQLite) in the background,
# run client1 (two functions competing) and client2 (posts two competitions, prints the
# leaderboards), then leave the server running and say how to stop it.
# Environment: PYTHON (default: python3), CROWDSOURCE_PORT (default: 8889; 0: any free port).
set -euo pipefail

PYTHON="${PYTHON:-python3}"
PORT="${CROWDSOURCE_PORT:-8889}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LOG="${TMPDIR:-/tmp}/crowdsource-demo-${PORT}.log"
export CROWDSOURCE_URL="http://127.0.0.1:${PORT}"

answers() {
    "$PYTHON" - "$CROWDSOURCE_URL" <<'PY'
import sys, requests
try:
    requests.get(sys.argv[1] + "/api/v1/competitions", timeout=1).raise_for_status()
except Exception:
    sys.exit(1)
PY
}

SERVER_PID=""
if [ "${PORT}" != 0 ] && answers; then
    echo "A crowdsource server already answers at ${CROWDSOURCE_URL}; using it."
else
    PORT_FILE="${LOG%.log}.port"
    rm -f "${PORT_FILE}"
    nohup "$PYTHON" -m crowdsource.server --ip=127.0.0.1 --port="${PORT}" \
        --port-file="${PORT_FILE}" >"${LOG}" 2>&1 &
    SERVER_PID=$!
    echo "Starting the server (server pid ${SERVER_PID}, log ${LOG})"
    for _ in $(seq 1 150); do
        if [ -s "${PORT_FILE}" ]; then
            export CROWDSOURCE_URL="http://127.0.0.1:$(cat "${PORT_FILE}")"
            answers && break
        fi
        if ! kill -0 "${SERVER_PID}" 2>/dev/null; then
            echo "The server exited; its log says:" >&2
            tail -n 20 "${LOG}" >&2
            exit 1
        fi
        sleep 0.2
    done
    answers || { echo "The server did not answer within 30 s (log: ${LOG})" >&2; exit 1; }
fi

"$PYTHON" "${HERE}/client1.py" &
CLIENT1_PID=$!
trap 'kill "${CLIENT1_PID}" 2>/dev/null || true' EXIT
"$PYTHON" "${HERE}/client2.py"
kill "${CLIENT1_PID}" 2>/dev/null || true
wait "${CLIENT1_PID}" 2>/dev/null || true

echo
echo "Leaderboards at ${CROWDSOURCE_URL}/leaderboard"
if [ -n "${SERVER_PID}" ]; then
    echo "The server keeps running at ${CROWDSOURCE_URL} (pid ${SERVER_PID}, log ${LOG})."
    echo "Stop it with: kill ${SERVER_PID}"
fi
