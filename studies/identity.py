"""A study's identity: the teacher, the data and the target every one of its trials must share.

A study carries its own definition: the spec (the task reference and its arguments among it), the
teacher's weights hash, the data's hash and the target's fingerprint are stored when it is created.
Every host that runs its trials afterwards (a resumed ``launch``, ``tradeoff worker``) builds its
task from the stored spec and is refused (:class:`StudyMismatch`, exit 2) when any of them differs:
results from two teachers, two datasets or two kinds of machine on one front would be silently wrong.

Teachers a task trains itself (:func:`tradeoff.studies.cached_teacher`) can be shared through an
Optuna artifact store in a directory every host mounts (``[study] artifacts``): the launching host
uploads the file (:func:`publish_teacher`), a joining host downloads it into its cache before it
builds the task (:func:`fetch_teacher`), so the teacher is trained once, not once per host.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import socket
from pathlib import Path
from typing import Any

import optuna
from optuna.artifacts import FileSystemArtifactStore, download_artifact, upload_artifact

from tradeoff.objectives import fingerprint_differences

from . import record
from .storage import StorageError
from .tasks import Task
from .teachers import cache_dir, weights_sha256


class StudyMismatch(ValueError):
    """The named study exists but this host would add trials it cannot compare: another spec, teacher,
    data or target."""


def task_identity(task: Task, kwargs: dict[str, Any], data_sha256: str) -> dict[str, Any]:
    """What :data:`record.STUDY_TASK` holds for ``task`` built with ``kwargs``.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> task = Task("doc", nn.Linear(2, 2), [], [], (torch.zeros(1, 2),), info={"epochs": 3})
        >>> sorted(task_identity(task, {"seed": 0}, "abc"))
        ['data_sha256', 'info', 'kwargs', 'name', 'teacher_sha256']
    """
    return {
        "name": task.name,
        "kwargs": kwargs,
        "teacher_sha256": weights_sha256(task.model),
        "data_sha256": data_sha256,
        "info": task.info,
    }


def check_task_identity(study_name: str, stored: dict[str, Any] | None, here: dict[str, Any]) -> None:
    """Refuse a host whose task yields another teacher or other data than the study was created with.

    Keys an older study did not store are not compared.

    Example:
        >>> check_task_identity("s", {"teacher_sha256": "a" * 64}, {"teacher_sha256": "b" * 64})
        Traceback (most recent call last):
        ...
        tradeoff.studies.identity.StudyMismatch: study 's' was created with a different teacher than this host's task ...
    """
    if not stored:
        return
    what = {  # key -> (what differs, what a front would mix)
        "teacher_sha256": ("a different teacher", "two teachers"),
        "data_sha256": ("different training or validation data", "two datasets"),
    }
    for key, (differs, mix) in what.items():
        if stored.get(key) and here.get(key) and stored[key] != here[key]:
            raise StudyMismatch(
                f"study {study_name!r} was created with {differs} than this host's task builds ({key} "
                f"{stored[key][:12]}… in the study, {here[key][:12]}… here); results from {mix} on one front "
                "would be wrong. Give this host what the study was created with (same files, same task "
                "arguments, same package versions), or launch a new study."
            )


def check_target(study_name: str, stored: dict[str, Any] | None, here: dict[str, Any]) -> None:
    """Refuse a host that is another kind of machine than the study's target.

    Example:
        >>> a = {"device": "cpu", "cpu": "A", "cpu_flags": [], "threads": 1, "torch": "2.13.0"}
        >>> check_target("s", a, {**a, "cpu": "B"})
        Traceback (most recent call last):
        ...
        tradeoff.studies.identity.StudyMismatch: study 's' measures on another target than this host: cpu: ...
    """
    if not stored:
        return
    differences = fingerprint_differences(stored, here)
    if differences:
        raise StudyMismatch(
            f"study {study_name!r} measures on another target than this host: {'; '.join(differences)}. Latency and "
            "energy are only comparable on one kind of machine: run a study of its own here and compare the two "
            "(tradeoff dashboard, /compare)."
        )


def note_host(study: optuna.Study, fingerprint: dict[str, Any], workers: int) -> None:
    """Record that this host runs the study's trials (``host:<name>``: one key per host, so hosts never race)."""
    key = f"{record.STUDY_HOST_PREFIX}{socket.gethostname()}"
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    before = study.user_attrs.get(key) or {}
    study.set_user_attr(
        key,
        {
            "fingerprint": fingerprint,
            "first_joined": before.get("first_joined", now),
            "last_joined": now,
            "workers": workers,
        },
    )


def hosts(study_attrs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The hosts that joined the study, by name (what :func:`note_host` stored)."""
    prefix = record.STUDY_HOST_PREFIX
    return {k[len(prefix) :]: v for k, v in study_attrs.items() if k.startswith(prefix)}


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def artifact_store(path: str) -> FileSystemArtifactStore:
    """The Optuna artifact store at ``path`` (``[study] artifacts``), or a :class:`StorageError` naming it."""
    root = Path(path)
    if not root.is_dir():
        raise StorageError(
            f"study.artifacts {path!r} is not a directory this host can read: mount the shared directory the study "
            "names at that path (or create it, on the host that launches the study)."
        )
    return FileSystemArtifactStore(str(root))


def publish_teacher(study: optuna.Study, task: Task, store_path: str | None) -> dict[str, Any] | None:
    """Upload the teacher ``task`` trained and cached to the artifact store at ``store_path``, once per study.

    Only teachers kept by :func:`~tradeoff.studies.cached_teacher` (``task.info["teacher_cache"]``) are
    uploaded: a task that loads its own checkpoint already shares it its own way.
    """
    if store_path is None or record.STUDY_TEACHER in study.user_attrs:
        return study.user_attrs.get(record.STUDY_TEACHER)
    cached = task.info.get("teacher_cache")
    if not cached or not Path(cached).is_file():
        return None
    path = Path(cached)
    try:
        name = str(path.resolve().relative_to(cache_dir().resolve()))
    except ValueError:
        name = path.name
    artifact_id = upload_artifact(artifact_store=artifact_store(store_path), file_path=str(path), study_or_trial=study)
    entry = {"store": store_path, "artifact_id": artifact_id, "file": name, "sha256": _file_sha256(path)}
    study.set_user_attr(record.STUDY_TEACHER, entry)
    return entry


def fetch_teacher(study_attrs: dict[str, Any], store_path: str | None) -> str:
    """Put the study's teacher into this host's cache before the task is built; what happened, in words
    ("" when the study shares no teacher).

    Nothing to do when the study has no teacher artifact or the cache already holds the file with
    the stored hash. ``store_path`` is where this host reaches the store (the spec's ``artifacts``).

    Raises:
        StorageError: the store cannot be read here, or the file in it is not the teacher the study stored.
    """
    entry = study_attrs.get(record.STUDY_TEACHER)
    if not entry:
        return ""
    target = cache_dir() / entry["file"]
    if target.is_file() and _file_sha256(target) == entry["sha256"]:
        return f"teacher in the cache ({target})"
    store = artifact_store(store_path or entry["store"])
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.download")
    tmp.unlink(missing_ok=True)
    try:
        download_artifact(artifact_store=store, file_path=str(tmp), artifact_id=entry["artifact_id"])
    except Exception as exc:  # noqa: BLE001 - a missing or unreadable artifact: one line for the user
        raise StorageError(
            f"cannot read the study's teacher (artifact {entry['artifact_id']}) from {store_path or entry['store']!r}: "
            f"{exc}. Mount the study's artifact store here, or copy {entry['file']} into {cache_dir()}."
        ) from None
    if _file_sha256(tmp) != entry["sha256"]:
        tmp.unlink(missing_ok=True)
        raise StorageError(
            f"the teacher in {store_path or entry['store']!r} (artifact {entry['artifact_id']}) is not the one the "
            "study stored (its hash differs): the store was changed after the study was created."
        )
    os.replace(tmp, target)
    return f"teacher downloaded from the study's artifact store into {target}"
