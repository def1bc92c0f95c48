# shellcheck shell=bash
# Shared by the compat tests (compat-tests/*.sh); sourced, not run.
#
# A compat test starts a real program from Debian (server) and real clients, each either under the
# preload (build/preload/demirun) or native, checks what they return, and cleans up by PID even on
# failure. Usage of every test:  compat-tests/NAME.sh BUILD_DIR [--server-native|--client-native]
#   (default)         server and client both preloaded         (ctest: compat.NAME.both)
#   --server-native   native server, preloaded client          (ctest: compat.NAME.server_native)
#   --client-native   preloaded server, native client          (ctest: compat.NAME.client_native)
# Exit status: 0 pass, 1 fail, 2 usage, 77 skipped (program or preload library missing).
#
# Environment:
#   DEMI_COMPAT_NATIVE_ONLY=1   run everything without the preload (to check the test itself)
#   DEMIRUN=PATH                launcher to use instead of BUILD_DIR/preload/demirun
#   DEMI_COMPAT_LIBOS=NAME      LibOS passed to demirun --libos (default catnap)
#   DEMI_COMPAT_KEEP=1          keep the temporary directory (logs, data) after the test
#   DEMI_COMPAT_VERBOSE=1       print the full logs at the end even when the test passes

set -uo pipefail

COMPAT_NAME=$(basename "$0" .sh)
COMPAT_MODE=both
COMPAT_LIBOS=${DEMI_COMPAT_LIBOS:-catnap}
COMPAT_TMP=""
COMPAT_PIDS=()       # process-group leaders we started (each a `timeout` around a server)
declare -A COMPAT_SRV=()   # server name -> PID
SERVER_WRAP=()       # prefix for server commands: the demirun command line, or nothing
CLIENT_WRAP=()       # prefix for client commands
PYTHON=python3
EXIT_STATUS=0        # set by wait_exit

compat_usage() {
  echo "usage: $0 BUILD_DIR [--server-native|--client-native]"
  echo "  BUILD_DIR holds preload/demirun and preload/libdemikernel_preload.so"
  echo "  (default: server and client preloaded; --server-native: native server, preloaded client;"
  echo "   --client-native: preloaded server, native client)"
  echo "  DEMI_COMPAT_NATIVE_ONLY=1 runs everything without the preload."
}

log() { printf '[%s %s] %s\n' "$COMPAT_NAME" "$(date +%T)" "$*"; }

skip() {
  echo "SKIP: $COMPAT_NAME: $*"
  exit 77
}

# Print the tail of every log in the temporary directory.
compat_show_logs() {
  local lines=${1:-40} f
  [ -n "$COMPAT_TMP" ] && [ -d "$COMPAT_TMP" ] || return 0
  for f in "$COMPAT_TMP"/*.log; do
    [ -s "$f" ] || continue
    echo "----- $(basename "$f") (last $lines lines)"
    tail -n "$lines" "$f" | cut -c1-400
  done
  echo "-----"
}

fail() {
  echo "FAIL: $COMPAT_NAME ($COMPAT_MODE): $*"
  compat_show_logs 40
  exit 1
}

# Is PID a live (not zombie) process?
alive() {
  local st
  st=$(awk '{ sub(/^.*\) /, ""); print $1 }' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$st" ] && [ "$st" != Z ]
}

# Stop one process group we started: TERM, then KILL after a grace period.
compat_kill_group() {
  local pid=$1 _
  kill -TERM -- "-$pid" 2>/dev/null || true
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do
    alive "$pid" || break
    sleep 0.1
  done
  if alive "$pid"; then
    kill -KILL -- "-$pid" 2>/dev/null || true
    kill -KILL "$pid" 2>/dev/null || true
  fi
  # Members of the group that outlived the leader (e.g. nginx workers).
  kill -KILL -- "-$pid" 2>/dev/null || true
}

# shellcheck disable=SC2317  # invoked through the EXIT trap
compat_cleanup() {
  local rc=$? pid
  trap - EXIT INT TERM
  for pid in "${COMPAT_PIDS[@]}"; do
    compat_kill_group "$pid"
  done
  if [ -n "$COMPAT_TMP" ] && [ -d "$COMPAT_TMP" ]; then
    if [ "${DEMI_COMPAT_VERBOSE:-0}" = 1 ]; then
      compat_show_logs 200
    fi
    if [ "${DEMI_COMPAT_KEEP:-0}" = 1 ]; then
      echo "kept $COMPAT_TMP"
    else
      rm -rf "$COMPAT_TMP"
    fi
  fi
  exit "$rc"
}

# compat_init "$@" PROGRAM...: parse the arguments, check the programs and the preload, make the temp dir.
compat_init() {
  local build="" arg
  local -a progs=()
  while [ $# -gt 0 ]; do
    case "$1" in
      --) shift; progs=("$@"); break ;;
      *) arg=$1; shift ;;
    esac
    case "$arg" in
      --server-native) COMPAT_MODE=server_native ;;
      --client-native) COMPAT_MODE=client_native ;;
      --both) COMPAT_MODE=both ;;
      -h|--help) compat_usage; exit 0 ;;
      -*) compat_usage >&2; exit 2 ;;
      *) if [ -z "$build" ]; then build=$arg; else compat_usage >&2; exit 2; fi ;;
    esac
  done
  if [ -z "$build" ]; then
    compat_usage >&2
    exit 2
  fi

  local p
  for p in timeout ss sha256sum "${progs[@]}"; do
    command -v "$p" >/dev/null 2>&1 || skip "$p not installed (scripts/setup.sh installs it)"
  done
  # The Debian interpreter, not a wrapper script (pyenv shims are bash scripts that would run preloaded too).
  if [ -x /usr/bin/python3 ]; then
    PYTHON=/usr/bin/python3
  elif command -v python3 >/dev/null 2>&1; then
    PYTHON=$(python3 -c 'import sys; print(sys.executable)')
  else
    skip "python3 not installed"
  fi

  local demirun
  if [ "${DEMI_COMPAT_NATIVE_ONLY:-0}" = 1 ]; then
    demirun=""
  else
    demirun=${DEMIRUN:-$build/preload/demirun}
    [ -x "$demirun" ] || skip "no preload launcher at $demirun (preload not built)"
    if [ -z "${DEMIRUN:-}" ] && [ ! -f "$build/preload/libdemikernel_preload.so" ]; then
      skip "no $build/preload/libdemikernel_preload.so (preload not built)"
    fi
  fi
  if [ -n "$demirun" ]; then
    # A preloaded program whose LibOS cannot start must not quietly fall back to libc and pass.
    export DEMI_PRELOAD_FALLBACK=abort
    # An ASan-built preload library goes into programs that are not built with ASan: the runtime then
    # cannot be first in the initial library list, and ASan refuses to start unless told not to check.
    if grep -q '^DEMI_SANITIZE:BOOL=ON' "$build/CMakeCache.txt" 2>/dev/null; then
      # Leak checking at exit is off: these are third-party servers, whose exit paths are not ours
      # to judge, and LeakSanitizer stopping a multi-threaded server at exit was seen to hang it once.
      export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0:detect_leaks=0"
    fi
    [ "$COMPAT_MODE" = server_native ] || SERVER_WRAP=("$demirun" --libos "$COMPAT_LIBOS" --)
    [ "$COMPAT_MODE" = client_native ] || CLIENT_WRAP=("$demirun" --libos "$COMPAT_LIBOS" --)
  fi

  COMPAT_TMP=$(mktemp -d "/tmp/demi-compat-$COMPAT_NAME.XXXXXX") || fail "mktemp failed"
  chmod 755 "$COMPAT_TMP"
  trap compat_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  local sdesc=native cdesc=native
  [ ${#SERVER_WRAP[@]} -eq 0 ] || sdesc="preloaded ($COMPAT_LIBOS)"
  [ ${#CLIENT_WRAP[@]} -eq 0 ] || cdesc="preloaded ($COMPAT_LIBOS)"
  log "mode $COMPAT_MODE: server $sdesc, client $cdesc; temp dir $COMPAT_TMP"
}

# free_port [tcp|udp|both]: a port nobody is bound to on 127.0.0.1 (the kernel picks it).
free_port() {
  "$PYTHON" - "${1:-tcp}" <<'EOF'
import socket, sys
want = sys.argv[1]
for _ in range(100):
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    t.bind(("127.0.0.1", 0))
    port = t.getsockname()[1]
    ok = True
    if want in ("udp", "both"):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.bind(("127.0.0.1", port))
        except OSError:
            ok = False
        u.close()
    t.close()
    if ok:
        print(port)
        sys.exit(0)
sys.exit(1)
EOF
}

# start_server NAME LIMIT CMD...: run CMD (under the server wrapper) in the background, bounded by LIMIT
# seconds, output in $COMPAT_TMP/NAME.log. `timeout` puts itself and CMD in a new process group, so the
# whole group (nginx workers too) can be stopped by its PID.
start_server() {
  local name=$1 limit=$2
  shift 2
  log "start $name:$(printf ' %q' "${SERVER_WRAP[@]}" "$@")"
  timeout -k 5 "$limit" "${SERVER_WRAP[@]}" "$@" >"$COMPAT_TMP/$name.log" 2>&1 </dev/null &
  local pid=$!
  COMPAT_PIDS+=("$pid")
  COMPAT_SRV[$name]=$pid
}

# wait_listen NAME PORT [tcp|udp] [SECONDS]: wait until something listens on 127.0.0.1:PORT; fail if the
# server exits first.
wait_listen() {
  local name=$1 port=$2 proto=${3:-tcp} secs=${4:-20} _ flag=-Hltn
  [ "$proto" = udp ] && flag=-Hlun
  for _ in $(seq 1 $((secs * 10))); do
    if ss "$flag" "sport = :$port" 2>/dev/null | grep -q .; then
      check_preloaded "$name"
      return 0
    fi
    alive "${COMPAT_SRV[$name]}" || fail "$name exited before listening on $proto port $port"
    sleep 0.1
  done
  fail "$name did not listen on $proto port $port within $secs s"
}

# check_preloaded NAME: the server process (the child of its `timeout`) has the preload library mapped
# exactly when it is meant to run preloaded.
check_preloaded() {
  local child mapped=0
  child=$(cat "/proc/${COMPAT_SRV[$1]}/task/${COMPAT_SRV[$1]}/children" 2>/dev/null)
  child=${child%% *}
  [ -n "$child" ] || fail "$1: cannot find the server process under PID ${COMPAT_SRV[$1]}"
  grep -q 'libdemikernel_preload\.so' "/proc/$child/maps" 2>/dev/null && mapped=1
  if [ ${#SERVER_WRAP[@]} -gt 0 ] && [ "$mapped" -eq 0 ]; then
    fail "$1 (PID $child) runs without libdemikernel_preload.so mapped"
  elif [ ${#SERVER_WRAP[@]} -eq 0 ] && [ "$mapped" -eq 1 ]; then
    fail "$1 (PID $child) has libdemikernel_preload.so mapped but should run native"
  fi
}

# server_alive NAME: fail unless the server is still running.
server_alive() {
  alive "${COMPAT_SRV[$1]}" || fail "$1 died"
}

# stop_server NAME [SIGNAL] [EXPECTED_STATUS...]: signal the server (default TERM), wait for it (bounded),
# and fail unless its exit status is one of the expected ones (default 0).
stop_server() {
  local name=$1 sig=${2:-TERM} pid _ st
  shift 2 || shift $#
  local -a expected=("$@")
  [ ${#expected[@]} -gt 0 ] || expected=(0)
  pid=${COMPAT_SRV[$name]}
  kill "-$sig" "$pid" 2>/dev/null || true
  for _ in $(seq 1 150); do
    alive "$pid" || break
    sleep 0.1
  done
  alive "$pid" && fail "$name did not exit within 15 s of SIG$sig"
  wait "$pid"
  st=$?
  local e
  for e in "${expected[@]}"; do
    [ "$st" = "$e" ] && { log "$name exited with status $st"; return 0; }
  done
  fail "$name exited with status $st after SIG$sig (expected ${expected[*]})"
}

# wait_exit NAME SECONDS: wait for a server that exits by itself; its status goes to EXIT_STATUS
# (124 if it is still running). Not in $(...): a subshell cannot wait for our children.
wait_exit() {
  local name=$1 secs=$2 pid _
  pid=${COMPAT_SRV[$name]}
  for _ in $(seq 1 $((secs * 10))); do
    alive "$pid" || break
    sleep 0.1
  done
  if alive "$pid"; then
    EXIT_STATUS=124
    return 0
  fi
  wait "$pid"
  # shellcheck disable=SC2034  # read by the caller
  EXIT_STATUS=$?
}

# client LIMIT CMD...: run a client (under the client wrapper), bounded by LIMIT seconds.
client() {
  local limit=$1
  shift
  timeout -k 5 "$limit" "${CLIENT_WRAP[@]}" "$@"
}

# client_py LIMIT SCRIPT ARGS...: run a Python client (under the client wrapper).
client_py() {
  local limit=$1
  shift
  timeout -k 5 "$limit" "${CLIENT_WRAP[@]}" "$PYTHON" "$@"
}

# rand_file PATH BYTES: random content.
rand_file() {
  head -c "$2" /dev/urandom >"$1" || fail "cannot write $1"
}

sha() { sha256sum "$1" | cut -d' ' -f1; }

pass() {
  log "PASS ($COMPAT_MODE)"
  exit 0
}
