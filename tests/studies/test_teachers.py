"""cached_teacher: trains once per recipe, caches the weights on disk, loads them on later calls."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from tradeoff.studies import cached_teacher


def _train_counting(calls: list[int]):
    """A train function that records each call and moves every weight (so trained != fresh)."""

    def train(model: nn.Module) -> None:
        calls.append(1)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))

    return train


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TRADEOFF_CACHE_DIR", str(tmp_path))
    return tmp_path


def test_trains_once_then_loads_the_same_weights(cache: Path) -> None:
    calls: list[int] = []
    recipe = {"arch": "Linear/v1", "epochs": 2}
    first_model = nn.Linear(3, 2)
    first = cached_teacher(first_model, name="tiny", recipe=recipe, train=_train_counting(calls), seed=1)
    assert len(calls) == 1 and first["teacher_trained_s"] is not None
    path = Path(first["teacher_cache"])
    assert path.is_file() and path.parent == cache and path.name.startswith("tiny-")
    assert first["teacher_recipe"] == recipe and not first_model.training

    again_model = nn.Linear(3, 2)  # fresh weights, replaced by the cached ones
    again = cached_teacher(again_model, name="tiny", recipe=dict(recipe), train=_train_counting(calls), seed=1)
    assert len(calls) == 1  # loaded, not trained
    assert again["teacher_cache"] == first["teacher_cache"] and again["teacher_trained_s"] is None
    for a, b in zip(first_model.state_dict().values(), again_model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert not list(cache.glob("*.tmp"))  # written atomically: no temporary file left behind


def test_a_changed_recipe_or_seed_trains_again(cache: Path) -> None:
    calls: list[int] = []
    train = _train_counting(calls)
    base = cached_teacher(nn.Linear(3, 2), name="tiny", recipe={"epochs": 2}, train=train)
    other_recipe = cached_teacher(nn.Linear(3, 2), name="tiny", recipe={"epochs": 3}, train=train)
    other_seed = cached_teacher(nn.Linear(3, 2), name="tiny", recipe={"epochs": 2}, train=train, seed=7)
    assert len(calls) == 3
    assert len({base["teacher_cache"], other_recipe["teacher_cache"], other_seed["teacher_cache"]}) == 3


def test_training_is_seeded_and_at_one_thread(cache: Path) -> None:
    seen: list[tuple[int, torch.Tensor]] = []
    before = torch.get_num_threads()

    def train(model: nn.Module) -> None:
        seen.append((torch.get_num_threads(), torch.rand(3)))

    cached_teacher(nn.Linear(1, 1), name="a", recipe={}, train=train, seed=3)
    cached_teacher(nn.Linear(1, 1), name="b", recipe={}, train=train, seed=3)
    assert [threads for threads, _ in seen] == [1, 1] and torch.get_num_threads() == before
    assert torch.equal(seen[0][1], seen[1][1])  # torch's global seed was set to `seed` before training


def test_a_subfolder_name_and_a_seed_in_the_recipe(cache: Path) -> None:
    info = cached_teacher(nn.Linear(1, 1), name="examples/mine", recipe={"seed": 2}, train=lambda m: None, seed=2)
    assert Path(info["teacher_cache"]).parent == cache / "examples"
    with pytest.raises(ValueError, match=r"recipe\['seed'\] is 2 but seed is 0; pass the same value"):
        cached_teacher(nn.Linear(1, 1), name="mine", recipe={"seed": 2}, train=lambda m: None)
    with pytest.raises(ValueError, match="name must be a relative file-name stem"):
        cached_teacher(nn.Linear(1, 1), name="../outside", recipe={}, train=lambda m: None)
