#!/usr/bin/env python3
"""Every public symbol has a summary: reads the symbol graphs that the
documentation build extracted (AIO_DOCS=1 swift package generate-documentation
... leaves them under <scratch>/<triple>/extracted-symbols/) and lists each
public or open symbol declared in Sources/ whose doc comment is missing or
empty. Exit status 1 if there is any.

    python3 scripts/check-doc-coverage.py .build-docs Aio,AioGIO   # these modules must be there
"""
import glob
import json
import os
import sys


def main() -> int:
    scratch = sys.argv[1] if len(sys.argv) > 1 else ".build-docs"
    graphs = sorted(glob.glob(os.path.join(scratch, "*", "extracted-symbols", "*", "*", "*.symbols.json")))
    if not graphs:
        print(f"doc coverage: no symbol graphs under {scratch}; build the documentation first", file=sys.stderr)
        return 1
    missing, total, modules = [], 0, []
    for path in graphs:
        graph = json.load(open(path))
        module = graph["module"]["name"]
        modules.append(module)
        for symbol in graph["symbols"]:
            if symbol.get("accessLevel") not in ("public", "open"):
                continue
            location = symbol.get("location")
            # Declared in this package's sources (not synthesized, not a
            # default implementation inherited from the standard library).
            if not location or "/Sources/" not in location["uri"]:
                continue
            total += 1
            doc = symbol.get("docComment")
            # A comment inherited from another module (a protocol
            # requirement's, the standard library's) is not ours.
            inherited = doc is not None and doc.get("module", module) != module
            if doc and not inherited and any(line["text"].strip() for line in doc["lines"]):
                continue
            file = location["uri"].split("/Sources/", 1)[1]
            line = location["position"]["line"] + 1
            missing.append(f"Sources/{file}:{line}: {symbol['kind']['displayName'].lower()} "
                           f"{'.'.join(symbol['pathComponents'])} has no summary")
    wanted = sys.argv[2].split(",") if len(sys.argv) > 2 else []
    absent = [m for m in wanted if m not in modules]
    if absent:
        print(f"doc coverage: no symbol graph for {', '.join(absent)} under {scratch}", file=sys.stderr)
        return 1
    for entry in sorted(set(missing)):
        print(entry)
    print(f"doc coverage: {total - len(missing)} of {total} public symbols documented "
          f"({', '.join(sorted(set(modules)))})")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
