"""A second process for the contract suite: builds a provider from an ini and runs ops.

stdin: ``{"ini": TEXT, "base_dir": PATH, "ops": [OP, ...]}`` where an OP is
``{"op": "unwrap", "blob": HEX, "context": {...}}`` or
``{"op": "wrap", "key": ID, "data_key": HEX, "context": {...}}``.
stdout: one JSON list, per op ``{"ok": HEX}`` or ``{"error": S3 CODE}``.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from encproxy import errors
from encproxy.keys.factory import build_provider
from encproxy.settings import load


def main() -> int:
    request = json.load(sys.stdin)
    provider = build_provider(load(request["ini"], Path(request["base_dir"]), environ={}))
    results = []
    for op in request["ops"]:
        try:
            if op["op"] == "unwrap":
                out = provider.unwrap(bytes.fromhex(op["blob"]), op["context"])
            else:
                out = provider.wrap(op["key"], bytes.fromhex(op["data_key"]), op["context"])
            results.append({"ok": out.hex()})
        except errors.S3Error as exc:
            results.append({"error": exc.code})
    provider.close()
    json.dump(results, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
