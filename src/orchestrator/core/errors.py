"""User-facing errors. The CLI prints them without a traceback and exits with `exit_code`."""

from __future__ import annotations


class UserError(Exception):
    """Bad input: the message names the file/key and the fix. Nothing has been submitted."""

    exit_code = 2


class SpecError(UserError):
    def __init__(self, source: str, problems: list[str] | str):
        self.source = source
        self.problems = [problems] if isinstance(problems, str) else problems
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid job spec {source}:\n{lines}")


class SchedulerError(Exception):
    """The scheduler refused or failed a call (sbatch, squeue, ...)."""

    exit_code = 1


class StorageError(OSError):
    """A result file or the registry could not be written (a full disk, a read-only filesystem):
    the message names it and says what was kept; nothing is left half-written."""

    exit_code = 1
