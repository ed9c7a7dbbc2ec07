"""One folder per run, a run token that Cancel targets, cross-process stop flags, and cleanup of old runs.

A run is created when Generate / Compare is clicked (`RunStore.new`): it gets a token and a folder
`<root>/<token>/` that holds everything the run writes (previews, mp4, report, grid) and its state files:

    state     queued | running | done | cancelled | timed_out | failed
    cancel    present once Cancel was pressed for this run
    progress  the run's last status line (for Cancel's message)

The state lives in files, not in the process, so a Cancel pressed in the server process reaches a run that a
ZeroGPU `spaces.GPU` worker executes in a forked process. A Cancel names a token: it can stop that run (queued or
running) or nothing; a later run has another token and never sees it.

`RunStore.prune` deletes finished runs beyond `keep` (newest kept) and any run older than `max_age_s`.
"""
from __future__ import annotations

import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

ACTIVE = ("queued", "running")
FINISHED = ("done", "cancelled", "timed_out", "failed")
_TOKEN = re.compile(r"^r[0-9]{16}-[0-9a-f]{8}$")
_last_us = 0


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def disk_usage(root) -> tuple[int, int]:
    """(files, bytes) under the folder `root` (files deleted while it walks are skipped)."""
    files = size = 0
    for dirpath, _, names in os.walk(root):
        for n in names:
            try:
                size += os.stat(os.path.join(dirpath, n)).st_size
                files += 1
            except FileNotFoundError:
                pass
    return files, size


@dataclass(frozen=True)
class Run:
    """A handle on one run's folder; every method reads or writes files, so any process may hold one."""

    token: str
    dir: Path

    @property
    def state(self) -> str:
        try:
            return (self.dir / "state").read_text().strip() or "queued"
        except FileNotFoundError:
            return "gone"

    def set_state(self, state: str) -> None:
        if self.dir.is_dir():
            _write(self.dir / "state", state)

    def stop_requested(self) -> bool:
        return (self.dir / "cancel").exists()

    def request_stop(self) -> None:
        (self.dir / "cancel").touch()

    def set_progress(self, text: str) -> None:
        try:
            _write(self.dir / "progress", text)
        except FileNotFoundError:  # pruned under a very old run: nothing to report
            pass

    @property
    def progress(self) -> str:
        try:
            return (self.dir / "progress").read_text()
        except FileNotFoundError:
            return ""

    @property
    def created(self) -> float:
        return int(self.token[1:17]) / 1e6

    def path(self, name: str) -> Path:
        return self.dir / name


class RunStore:
    """Run folders under `root`: create, look up by token, cancel, prune."""

    def __init__(self, root, keep: int = 64, max_age_s: float = 24 * 3600.0):
        self.root = Path(root)
        self.keep = int(keep)
        self.max_age_s = float(max_age_s)

    # --- lifecycle -------------------------------------------------------------------------------------------
    def new(self, state: str = "queued") -> Run:
        """A fresh run (folder + state file); prunes old runs first, so the folder count stays bounded."""
        self.prune()
        global _last_us
        _last_us = max(time.time_ns() // 1000, _last_us + 1)  # names sort in creation order, ties included
        token = f"r{_last_us:016d}-{uuid.uuid4().hex[:8]}"
        run = Run(token, self.root / token)
        run.dir.mkdir(parents=True, exist_ok=False)
        _write(run.dir / "state", state)
        return run

    def get(self, token) -> Optional[Run]:
        """The run of `token`, or None (unknown, malformed or already pruned)."""
        if not isinstance(token, str) or not _TOKEN.match(token):
            return None
        d = self.root / token
        return Run(token, d) if d.is_dir() else None

    def cancel(self, token) -> Optional[str]:
        """Cancel the run of `token` if it is queued or running; returns a status line, or None when there is
        nothing to cancel (no run, or it already finished): the caller leaves the status as it is."""
        run = self.get(token)
        if run is None:
            return None
        state = run.state
        if state not in ACTIVE:
            return None
        run.request_stop()
        if state == "queued":
            return "cancelling: the run had not started; it will not run"
        where = run.progress
        return f"cancelling after {where}…" if where else "cancelling…"

    # --- cleanup ---------------------------------------------------------------------------------------------
    def runs(self) -> list[Run]:
        """Every run folder, oldest first."""
        try:
            names = sorted(n for n in os.listdir(self.root) if _TOKEN.match(n))
        except FileNotFoundError:
            return []
        return [Run(n, self.root / n) for n in names]

    def prune(self, now: Optional[float] = None) -> list[str]:
        """Delete runs older than `max_age_s` (any state: a run that old crashed or was abandoned) and finished runs
        beyond the newest `keep`. Returns the tokens deleted."""
        now = time.time() if now is None else now
        runs = self.runs()
        gone = []
        finished = []
        for r in runs:
            if now - r.created > self.max_age_s:
                gone.append(r)
            elif r.state in FINISHED or r.state == "gone":
                finished.append(r)
        excess = len(finished) - self.keep
        if excess > 0:
            gone += finished[:excess]
        for r in gone:
            shutil.rmtree(r.dir, ignore_errors=True)
        return [r.token for r in gone]

    def disk_usage(self) -> tuple[int, int]:
        """(files, bytes) under the root."""
        return disk_usage(self.root)
