"""Keeping the better weights, and explaining a fall (search/finetune.py)."""

from __future__ import annotations

import pytest

from tradeoff.search.finetune import KeepBetter, explain_drop


def test_keep_better_keeps_zero_shot_weights_only_when_fine_tuning_lost_accuracy() -> None:
    keep = KeepBetter(enabled=True)
    assert keep.keeps_zero_shot(zero_shot=0.9, tuned=0.89)
    assert not keep.keeps_zero_shot(zero_shot=0.9, tuned=0.91)
    assert not keep.keeps_zero_shot(zero_shot=None, tuned=0.5)  # nothing held back: no choice to make
    assert not KeepBetter(enabled=False).keeps_zero_shot(zero_shot=0.9, tuned=0.1)


@pytest.mark.parametrize(
    ("losses", "expected"),
    [
        ([0.2, 0.5, 0.8, 0.9, 1.0, 1.1, 1.0], "learning rate 0.001 too high"),
        ([2.0, 1.5, 1.0, 0.6, 0.4, 0.3, 0.2, 0.2, 0.1], "fits the training batches"),
        ([1.0, 0.99, 1.01, 1.0, 1.0, 1.0, 1.02], "too low to recover"),
    ],
)
def test_a_fall_is_explained_from_the_loss(losses: list[float], expected: str) -> None:
    text = explain_drop(losses, 1e-3, before=0.9, after=0.6, where="rung 0.25")
    assert text.startswith("accuracy fell from 0.9000 before fine-tuning to 0.6000 at rung 0.25")
    assert expected in text


def test_keep_better_breaks_a_tie_by_nearness_to_the_teacher() -> None:
    keep = KeepBetter(enabled=True)
    assert keep.keeps_zero_shot(zero_shot=0.9, tuned=0.8, zero_shot_kl=0.5, tuned_kl=0.1)  # accuracy decides first
    assert not keep.keeps_zero_shot(zero_shot=0.8, tuned=0.9, zero_shot_kl=0.1, tuned_kl=0.5)
    assert not keep.keeps_zero_shot(zero_shot=1.0, tuned=1.0, zero_shot_kl=0.05, tuned_kl=0.02)  # nearer: tuned
    assert keep.keeps_zero_shot(zero_shot=1.0, tuned=1.0, zero_shot_kl=0.02, tuned_kl=0.05)  # farther: from before
    assert keep.keeps_zero_shot(zero_shot=1.0, tuned=1.0)  # no evidence it helped: the weights that moved least
    assert not KeepBetter(enabled=False).keeps_zero_shot(zero_shot=0.9, tuned=0.1)
