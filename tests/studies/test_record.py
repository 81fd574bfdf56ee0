from __future__ import annotations

import re
from pathlib import Path

import pytest

from tradeoff.studies import TrialRecord, record

from .fake_study import BASE, fake_study

DOC = Path(__file__).resolve().parents[2] / "docs" / "TRIAL_RECORD.md"


def test_a_record_reads_back_as_written() -> None:
    study = fake_study([dict(BASE, accuracy=0.8)])
    rec = TrialRecord.read(study.trials[1])
    assert rec.role == "candidate" and rec.values["accuracy"] == 0.8
    assert rec.constraints == {"max_accuracy_drop": pytest.approx(0.05)}
    assert rec.figures == {"params": 99} and rec.seconds == {"distil": 1.0}
    assert TrialRecord.read(study.trials[0]).role == "baseline"
    assert study.metric_names == ["accuracy", "size_bytes", "latency_ms", "energy_mj"]


def test_a_record_needs_every_objective() -> None:
    with pytest.raises(ValueError, match="latency_ms"):
        TrialRecord(role="candidate", recipe={}, values={"accuracy": 1, "size_bytes": 1, "energy_mj": 1})


def test_every_stored_key_is_documented_in_one_place() -> None:
    text = DOC.read_text()
    documented = set(re.findall(r"^\| `([a-z_]+|[a-z_]+:<[a-z]+>)` \|", text, flags=re.MULTILINE))
    # a key that ends in ":" is a prefix (one key per host: "host:<name>")
    keys = {k + "<name>" if k.endswith(":") else k for k in (*record.TRIAL_KEYS, *record.STUDY_KEYS)}
    assert keys <= documented, keys - documented
    assert set(TrialRecord(role="baseline", recipe={}, values=BASE).user_attrs()) <= documented


def test_an_older_study_reads_under_todays_keys() -> None:
    """Format tradeoff.study/1 named the deployable form ``executed_as``/``executable``: read the same."""
    import optuna

    old = optuna.trial.create_trial(
        values=list(BASE.values()),
        user_attrs={
            "role": "candidate",
            "executed_as": "int8",
            "executable": {"key": "abc", "latency_ms": 1.0, "latency_from": None},
            "provenance": {"latency_ms": {"source": "measured", "executed_as": "int8", "execution_backend": "fx"}},
        },
    )
    rec = TrialRecord.read(old)
    assert rec.deployable_form == "int8" and rec.deployable["key"] == "abc"
    assert rec.provenance["latency_ms"]["deployable_form"] == "int8"
    assert rec.provenance["latency_ms"]["deployable_backend"] == "fx"
    assert "executed_as" not in record.attrs(old)


def test_an_older_studys_fine_tuning_reads_under_todays_keys() -> None:
    """Before [search] select_on, the selection data was always held-back training batches (held_back_*)."""
    import optuna

    old = optuna.trial.create_trial(
        values=list(BASE.values()),
        user_attrs={
            "finetune": {
                "kept": "zero_shot",
                "batchnorm": "train",
                "held_back_zero_shot": 0.9,
                "held_back_finetuned": 0.8,
            }
        },
    )
    ft = record.finetune_of(old)
    assert (ft["selection"], ft["selection_zero_shot"], ft["selection_finetuned"]) == ("held_back", 0.9, 0.8)
    assert record.how_tuned(old) == "train, kept zero-shot"  # no regime then: the BatchNorm mode it had
