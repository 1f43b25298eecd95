"""A tiny TAP producer for integration tests run by `meson test` (protocol: tap)."""
import os
import subprocess
import sys
import traceback

BIN = os.environ.get("OPENSHELL_BIN", "build/src/cli/openshell")
SOURCE_ROOT = os.environ.get("OPENSHELL_SOURCE_ROOT", ".")
SPECS_DIR = os.environ.get("OPENSHELL_SPECS_DIR", os.path.join(SOURCE_ROOT, "..", "shared", "specs"))

_tests = []


def test(function):
    """Registers a test function; its docstring-free name is the TAP description."""
    _tests.append(function)
    return function


def run(*args, input=None, timeout=30, env=None):
    """Runs the openshell binary; returns CompletedProcess with text output."""
    return subprocess.run([BIN, *args], input=input, capture_output=True, text=True, errors="replace",
                          timeout=timeout, env=env)


def main():
    print(f"1..{len(_tests)}", flush=True)
    failed = 0
    for number, function in enumerate(_tests, 1):
        name = function.__name__.replace("_", " ")
        try:
            function()
            print(f"ok {number} - {name}", flush=True)
        except Exception:  # noqa: BLE001 - every failure is reported, never swallowed
            failed += 1
            print(f"not ok {number} - {name}", flush=True)
            for line in traceback.format_exc().splitlines():
                print(f"# {line}", flush=True)
    sys.exit(1 if failed else 0)
