"""Where the pages' data comes from: a running manager (its history, live, and its workers),
or the history directories on disk (`hstream ui`)."""

from __future__ import annotations

from typing import Any, Protocol

from hstream.cluster import history
from hstream.cluster.history import JobRecord, Summary
from hstream.cluster.manager import Manager


class Source(Protocol):
    where: str

    def summaries(self) -> list[Summary]: ...

    def job(self, job_id: str) -> JobRecord | None: ...

    def stderr(self, job_id: str, attempt_id: str) -> str | None: ...

    def workers(self) -> list[dict[str, Any]] | None:
        """The cluster's workers, or None when no cluster is behind the pages."""


class ManagerSource:
    """The manager's own history (running jobs live from memory) and its workers."""

    def __init__(self, manager: Manager) -> None:
        self.manager = manager
        self.where = f"manager {manager.host}:{manager.port}"

    def summaries(self) -> list[Summary]:
        return self.manager.history.summaries()

    def job(self, job_id: str) -> JobRecord | None:
        return self.manager.history.job(job_id)

    def stderr(self, job_id: str, attempt_id: str) -> str | None:
        return self.manager.history.stderr(job_id, attempt_id)

    def workers(self) -> list[dict[str, Any]] | None:
        status = self.manager.status_now()
        return list(status.get("workers", [])) if status else []


class DiskSource:
    """History directories, read as they are on disk (jobs of managers that are gone)."""

    def __init__(self, roots: list[str]) -> None:
        self.roots = roots
        self.where = "history in " + ", ".join(roots)

    def summaries(self) -> list[Summary]:
        return history.list_summaries(self.roots)

    def job(self, job_id: str) -> JobRecord | None:
        found = history.find_job(self.roots, job_id)
        return found[1] if found else None

    def stderr(self, job_id: str, attempt_id: str) -> str | None:
        for root in self.roots:
            text = history.read_stderr(root, job_id, attempt_id)
            if text is not None:
                return text
        return None

    def workers(self) -> list[dict[str, Any]] | None:
        return None
