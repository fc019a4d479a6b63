# Shared by the npm-installed protocol servers (sourced, not run): installs a pinned package
# once into .ci/cache/node-NAME/, and waits for a started server to answer over HTTP.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

# answering PORT: whether something answers HTTP on 127.0.0.1:PORT.
answering() { curl -s -o /dev/null "http://127.0.0.1:$1/"; }

# npm_install NAME PACKAGE@VERSION FILE: installs unless FILE (relative to the package dir)
# exists; prints the package dir.
npm_install() {
  local cache=$ROOT/.ci/cache/node-$1 pkg=${2%@*}
  if [ ! -f "$cache/node_modules/$pkg/$3" ]; then
    mkdir -p "$cache"
    ( cd "$cache" && { [ -f package.json ] || npm init -y >/dev/null; } && \
      npm install --no-audit --no-fund "$2" >/dev/null )
  fi
  echo "$cache/node_modules/$pkg"
}

# wait_answering NAME PORT PID: waits up to 30 s for PORT to answer; prints PID, or fails
# with the server's log (.ci/cache/NAME.log) when it died or never answered.
wait_answering() {
  for _ in $(seq 1 300); do
    if answering "$2"; then echo "$3"; return 0; fi
    kill -0 "$3" 2>/dev/null || { cat "$ROOT/.ci/cache/$1.log" >&2; return 1; }
    sleep 0.1
  done
  echo "$1 did not answer on :$2 within 30 s" >&2; return 1
}
