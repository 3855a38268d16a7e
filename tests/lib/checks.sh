# Shared by the shell test scripts (tests/install, tests/docs): sourced, not run.
#   checks_begin NAME   a temporary directory in $tmp, removed at exit with any
#                       server still running; ok/fail print "NAME: ok|FAIL ...".
#   require_tools HINT TOOL...   fails naming the first missing tool and HINT.
#   stop_server WHAT    SIGTERM to $server_pid, at most 15 s to exit; its exit
#                       status in $server_rc.
# Only the process this script started ($server_pid) is ever signalled.

checks_begin() {
  checks_name=$1
  checks=0
  server_pid=
  server_rc=
  tmp=$(mktemp -d "/tmp/warpcore-$checks_name.XXXXXX")
  trap checks_cleanup EXIT
}

checks_cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}

ok() { checks=$((checks + 1)); echo "$checks_name: ok   $*"; }
fail() { echo "$checks_name: FAIL $*" >&2; exit 1; }

require_tools() {
  local hint=$1 tool
  shift
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { echo "$checks_name: $tool is missing ($hint)" >&2; exit 1; }
  done
}

stop_server() {
  local i
  kill -TERM "$server_pid"
  for i in $(seq 150); do
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$server_pid" 2>/dev/null && fail "$1: still running 15 s after SIGTERM"
  server_rc=0
  wait "$server_pid" || server_rc=$?
  server_pid=
}
