# Sourced by scripts/test: the AWS SDK for JavaScript v3 that tests/api/test_node_sdk.py
# drives (tests/node). Node.js 20 or newer (the SDK's engines field) with npm; Debian's
# nodejs and npm when the machine has no node at all. The SDK is installed by `npm ci`
# from the committed package-lock.json, again only when the lock changed since.
node_dir=tests/node
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  ensure_apt_packages nodejs npm
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "scripts/test.d/45-node.sh: node and npm are needed for tests/node and were not" \
       "installed (Debian packages nodejs, npm)" >&2
  exit 1
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
  echo "scripts/test.d/45-node.sh: the AWS SDK for JavaScript v3 needs Node.js 20 or" \
       "newer; $(command -v node) is $(node --version)" >&2
  exit 1
fi
# npm ci leaves node_modules/.package-lock.json behind; an older one than the lock
# means the lock changed since the last install.
if [ ! -f "$node_dir/node_modules/.package-lock.json" ] \
    || [ "$node_dir/package-lock.json" -nt "$node_dir/node_modules/.package-lock.json" ]; then
  echo "installing tests/node (npm ci)" >&2
  (cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error) >&2
fi
unset node_dir node_major
