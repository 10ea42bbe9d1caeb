#!/usr/bin/env bash
# dynalite, the local DynamoDB-compatible server used by the tests and for
# development, pinned by tools/dynalite/package-lock.json.
#
#   scripts/dynalite.sh install          # npm ci (what the tests need)
#   scripts/dynalite.sh run [PORT] [DIR] # foreground on 127.0.0.1:PORT (default 8000);
#                                        # data in memory, or in LevelDB under DIR
set -euo pipefail
here=$(cd "$(dirname "$0")/../tools/dynalite" && pwd)
install() {
    if [ ! -e "$here/node_modules/dynalite/package.json" ]; then
        command -v npm >/dev/null || { echo "dynalite needs Node.js and npm (apt install nodejs npm)" >&2; exit 1; }
        (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
    fi
}
case "${1:-}" in
    install) install ;;
    run)
        install
        exec node "$here/serve.js" "${2:-8000}" "${3:-}"
        ;;
    *) echo "usage: scripts/dynalite.sh install | run [PORT] [DIR]" >&2; exit 2 ;;
esac
