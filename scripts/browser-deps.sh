# Sourced by scripts/test after scripts/infra.sh: makes sure the dashboard's browser test
# (tests/api/dashboard.rs, tests/browser/) has Debian's Chromium and playwright-core, installing
# them when missing. Quick when both are there.

ensure_browser_deps() {
  local dir=tests/browser
  if [ ! -x /usr/bin/chromium ]; then
    log "installing Debian's chromium for the dashboard's browser test"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
  fi
  if ! command -v npm >/dev/null 2>&1; then
    log "Node.js 20 or later with npm is needed for the dashboard's browser test"; exit 1
  fi
  # npm keeps a copy of the lock file it installed from in node_modules/.package-lock.json.
  if [ ! -f "$dir/node_modules/.package-lock.json" ] \
    || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
    log "installing $dir/node_modules (playwright-core, from $dir/package-lock.json)"
    npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error >&2
  fi
}

# The TypeScript example client (examples/ts-client: urql, graphql-ws, graphql-codegen) that
# tests/api/ts_client.rs builds and runs, from its lock file.
ensure_example_client_deps() {
  local dir=examples/ts-client
  if [ ! -f "$dir/node_modules/.package-lock.json" ] \
    || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
    log "installing $dir/node_modules (from $dir/package-lock.json)"
    npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error >&2
  fi
}
