#!/usr/bin/env python3
"""Fails when a layer includes another layer's headers that DESIGN.md forbids.

Usage: check_includes.py SOURCE_ROOT (STAMP_FILE | --tap)
Each file under src/<layer>/ and include/openshell/<layer>/ may include only
"openshell/<dep>/..." for the layers listed as allowed below.
"""
import pathlib
import re
import sys

# layer -> layers it may include (itself always allowed)
ALLOWED = {
    "core": set(),
    "policy": {"core"},
    "proxy": {"core", "policy"},
    "runtime": {"core"},
    "control": {"core", "policy", "proxy"},
    "sandbox": {"core", "policy", "proxy", "runtime", "control"},
    "cli": {"core", "policy", "proxy", "runtime", "control", "sandbox"},
}
INCLUDE = re.compile(r'^\s*#\s*include\s*[<"]openshell/([a-z_]+)/')


def violations(root: pathlib.Path):
    for layer, allowed in ALLOWED.items():
        for base in (root / "src" / layer, root / "include" / "openshell" / layer):
            if not base.is_dir():
                continue
            for path in sorted(base.rglob("*")):
                if path.suffix not in (".hpp", ".cpp", ".h", ".cc"):
                    continue
                for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                    match = INCLUDE.match(line)
                    if match and match.group(1) != layer and match.group(1) not in allowed:
                        yield f"{path.relative_to(root)}:{number}: layer '{layer}' may not include '{match.group(1)}'"


def main() -> int:
    root = pathlib.Path(sys.argv[1])
    found = list(violations(root))
    if sys.argv[2] == "--tap":
        print("1..1")
        print(("ok" if not found else "not ok") + " 1 - layers include only what DESIGN.md allows")
        for v in found:
            print("# " + v)
        return 0
    if found:
        print("\n".join(found), file=sys.stderr)
        return 1
    pathlib.Path(sys.argv[2]).write_text("ok\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
