"""Issue #32's start-up race, counted: start the app on an empty example cache, send TITAN text-to-video requests
as soon as its port answers (while the examples are cached), and record whether everything held.

    OMP_NUM_THREADS=1 python bench/startup_race.py [--tries 10] [--requests 2]

One JSON line per try (ok, seconds, the first line of what went wrong), then the count of failures. The check itself
is `tests/test_startup_race.py::race_once`.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tries", type=int, default=10)
    ap.add_argument("--requests", type=int, default=2)
    a = ap.parse_args()
    from tests.test_startup_race import race_once

    failures = 0
    with tempfile.TemporaryDirectory(prefix="gvs-race-") as tmp:
        for k in range(a.tries):
            t = time.perf_counter()
            out = race_once(Path(tmp) / f"try{k}", a.requests)
            failures += bool(out)
            print(json.dumps({"try": k, "ok": not out, "seconds": round(time.perf_counter() - t, 1),
                              "problem": out.splitlines()[0][:300] if out else ""}), flush=True)
            if out:
                (Path(tempfile.gettempdir()) / f"gvs-race-fail-{k}.log").write_text(out)
    print(json.dumps({"tries": a.tries, "failures": failures, "root": str(ROOT)}), flush=True)


if __name__ == "__main__":
    main()
