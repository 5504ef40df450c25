"""Fetching a component's Java distribution from Maven Central with `mvn`, once per POM version.

The broker's jars (infra/pom.xml) and the schema registry (infra/registry-pom.xml) each land in
a directory stamped with their POM's hash: a changed POM fetches again, an unchanged one never
runs Maven.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from infra import process
from infra.base import Progress, StackError

STAMP = ".pom.sha256"


@dataclass(frozen=True)
class MavenFetch:
    """What one `mvn` call puts into a directory: ``goal`` gets ``{dir}`` replaced by it."""

    label: str
    pom: Path
    goal: Sequence[str]
    complete: Callable[[Path], bool]
    """Whether a directory holds the whole distribution (a file every version has)."""

    def pom_hash(self) -> str:
        return hashlib.sha256(self.pom.read_bytes()).hexdigest()

    def is_current(self, target: Path) -> bool:
        try:
            stamped = (target / STAMP).read_text().strip() == self.pom_hash()
        except OSError:
            return False
        return stamped and self.complete(target)

    def resolve(self, target: Path, *, log_file: Path, progress: Progress) -> None:
        """Fill ``target`` unless it is current. Several stacks may share it (the tests'
        isolated ones do), so this runs under a lock into a scratch dir that is swapped in whole:
        no process ever sees a half-copied distribution."""
        target.parent.mkdir(parents=True, exist_ok=True)
        with process.file_lock(target.with_name(target.name + ".lock")):
            if self.is_current(target):
                return
            progress(f"{self.label}: fetching with mvn into {target}")
            scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
            try:
                self._run_mvn(scratch, log_file)
                (scratch / STAMP).write_text(self.pom_hash() + "\n")
                if target.exists():
                    old = target.with_name(f".{target.name}-old-{uuid.uuid4().hex}")
                    target.rename(old)
                    shutil.rmtree(old, ignore_errors=True)
                scratch.chmod(0o755)  # mkdtemp makes it private; the jars are not secret
                scratch.rename(target)
            finally:
                shutil.rmtree(scratch, ignore_errors=True)

    def _run_mvn(self, into: Path, log_file: Path) -> None:
        argv = ["mvn", "-q", "-B", "-Dstyle.color=never", "-f", str(self.pom)]
        argv += [part.replace("{dir}", str(into)) for part in self.goal]
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with log_file.open("wb") as log:
            result = subprocess.run(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, check=False
            )
        if result.returncode != 0 or not self.complete(into):
            raise StackError(
                f"mvn could not fetch the {self.label}'s distribution (exit {result.returncode}); "
                f"last lines of {log_file}:\n{process.tail(log_file)}"
            )
