"""A candidate sampler for issue 25: model the cheap objectives exactly, learn only accuracy (and latency).

Size and the modelled energy of a config are known before any training: prune a copy of the teacher to
the config's ratio and count its bytes and MACs at the config's widths. A TPE over four objectives has to
*learn* that relation from trials, which is the trials' whole cost. This sampler does not:

* **size and energy**: computed exactly for every candidate (:class:`CheapFigures`; the pruned structure is
  cached per ratio on a 0.01 grid, and candidates are drawn on that grid, so the figures are the ones a
  trial of that config records before fine-tuning);
* **latency**: interpolated in MACs between the measured trials of the same widths (the same executable
  kind), or the MACs ratio when no trial of those widths has run;
* **accuracy**: a Gaussian process (scikit-learn, Matern 5/2 + white noise) on the completed trials, used
  at its upper confidence bound ``mu + KAPPA * sigma``;
* **choice**: the candidate whose optimistic point adds the most hypervolume to the front of the
  completed feasible trials, in the benchmark's normalised space (SMS-EGO, Ponweiser et al., PPSN 2008,
  with the known objectives exact instead of modelled). When no candidate adds anything, or before
  ``MIN_TRIALS`` trials have completed, the multivariate TPE that ``auto`` builds decides instead.

Benchmark-only until it beats the default on two tasks (``benchmarks/search_efficiency.py``, method
``tradeoff-1w-exact``).
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import optuna
import torch
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution
from optuna.trial import FrozenTrial, TrialState
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel
from torch import nn

from tradeoff.objectives.energy import PJ_PER_MJ, EnergyModel
from tradeoff.objectives.pareto import hypervolume, pareto_mask
from tradeoff.objectives.profile import profile, size_bytes
from tradeoff.spaces import ApplyContext, RecipeSpace
from tradeoff.spaces.distillation import DEFAULT_LR
from tradeoff.studies import record

KAPPA = 1.0  # optimism of the accuracy bound: one standard deviation, the usual UCB default (not tuned here)
MIN_TRIALS = 6  # completed non-baseline trials before the GP is trusted: the auto warm starts are five
N_RANDOM = 256  # uniform candidates per suggestion...
N_LOCAL = 64  # ...and as many again near the current front (ratio +-0.05, the same widths)
RATIO_GRID = 0.01  # candidates' ratios are drawn on this grid, so the cached pruned structures are exact


class CheapFigures:
    """Size (bytes, dense packing) and modelled energy (mJ) of a config, computed before any training.

    Example:
        >>> m = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 10))
        >>> from tradeoff.studies import parse_spec
        >>> spec = parse_spec({"study": {"name": "c"}, "task": {"name": "digits"}})
        >>> cheap = CheapFigures(spec.recipe_space(m), m, (torch.randn(1, 1, 8, 8),))
        >>> a = cheap({"pruning.ratio": 0.0, "quantization.weight_bits": 32, "quantization.activation_bits": 32})
        >>> b = cheap({"pruning.ratio": 0.5, "quantization.weight_bits": 8, "quantization.activation_bits": 32})
        >>> b["size_bytes"] < a["size_bytes"] / 4
        True
    """

    def __init__(self, space: RecipeSpace, model: nn.Module, example_inputs: tuple[Any, ...]) -> None:
        self.space = space.resolved(DEFAULT_LR)  # the rate changes no size or energy; "auto" must be resolved to sample
        self.model, self.inputs = model, example_inputs
        self.energy = EnergyModel()
        self.dists = space.distributions()  # a knob a config leaves out (T, alpha) does not change these figures
        self._pruned: dict[float, nn.Module] = {}
        self._figures: dict[tuple[Any, ...], dict[str, float]] = {}

    def __call__(self, params: Mapping[str, Any]) -> dict[str, float]:
        full = {n: params.get(n, d.to_external_repr(d.to_internal_repr(_low(d)))) for n, d in self.dists.items()}
        recipe = self.space.sample(optuna.trial.FixedTrial(full))
        q = recipe.quantization
        key = (round(recipe.pruning.ratio, 6), q.weight_bits, q.activation_bits)
        if key not in self._figures:
            ratio = key[0]
            if ratio not in self._pruned:
                self._pruned[ratio] = recipe.pruning.apply_(copy.deepcopy(self.model), ApplyContext(self.inputs))
            model = self._pruned[ratio]
            bits = q.weight_bits_by_layer(model)
            prof = profile(model, self.inputs, bits, q.activation_bits)
            self._figures[key] = {
                "size_bytes": float(size_bytes(model, bits)),
                "energy_mj": sum(self.energy.energy_pj(prof).values()) / PJ_PER_MJ,
                "macs": float(prof.macs),
            }
        return self._figures[key]


def _low(dist: BaseDistribution) -> Any:
    return dist.choices[0] if isinstance(dist, CategoricalDistribution) else dist.low  # type: ignore[attr-defined]


def _features(params: Mapping[str, Any], dists: Mapping[str, BaseDistribution]) -> list[float]:
    """Each knob scaled to [0, 1]: floats by their range, widths by log2, categories by index."""
    out = []
    for name, dist in dists.items():
        v = params[name]
        if isinstance(dist, FloatDistribution):
            out.append((float(v) - dist.low) / ((dist.high - dist.low) or 1.0))
        elif isinstance(dist, CategoricalDistribution) and all(isinstance(c, int) for c in dist.choices):
            lo, hi = math.log2(min(dist.choices)), math.log2(max(dist.choices))
            out.append((math.log2(v) - lo) / ((hi - lo) or 1.0))
        elif isinstance(dist, CategoricalDistribution):
            out.append(dist.choices.index(v) / max(1, len(dist.choices) - 1))
        else:
            out.append(float(dist.to_internal_repr(v)))
    return out


class ExactCheapSampler(optuna.samplers.BaseSampler):
    """SMS-EGO over accuracy with size and energy exact (module docstring); TPE where it cannot decide.

    Args:
        space: The study's recipe space (its knobs are what this sampler suggests).
        cheap: Exact size and energy of a config.
        names: The objectives in the study's order (accuracy, size_bytes, latency_ms, energy_mj).
        max_accuracy_drop: The accuracy limit: the hypervolume reference, as in the benchmark.
        seed: Seeds the candidates and the fallback TPE.
    """

    def __init__(
        self,
        *,
        space: RecipeSpace,
        cheap: CheapFigures,
        names: Sequence[str],
        max_accuracy_drop: float | None,
        seed: int | None = None,
    ) -> None:
        self.dists = space.distributions()
        self.identity = space.identity_params()
        self.cheap, self.names, self.max_drop = cheap, tuple(names), max_accuracy_drop
        self.rng = np.random.default_rng(seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            self.fallback = optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)
        self.decided: dict[str, int] = {"model": 0, "fallback": 0}

    # ---------------------------------------------------------------- Optuna's sampler interface
    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return dict(self.dists)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if "fixed_params" in trial.system_attrs:  # an enqueued trial (baseline, warm start): nothing to choose
            return {}
        params, predicted = self._choose(study)
        self.decided["model" if params else "fallback"] += 1
        if predicted:  # what the model expected, beside what the trial will measure (benchmark diagnostics)
            study._storage.set_trial_system_attr(trial._trial_id, "exact_cheap_predicted", predicted)
        if not params:
            rel = self.fallback.infer_relative_search_space(study, trial)
            return self.fallback.sample_relative(study, trial, rel)
        return params

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        return self.fallback.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.fallback.before_trial(study, trial)

    def after_trial(
        self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        self.fallback.after_trial(study, trial, state, values)

    # ---------------------------------------------------------------- the choice
    def _candidates(self, front_params: list[dict[str, Any]]) -> list[dict[str, Any]]:
        def draw(name: str, dist: BaseDistribution) -> Any:
            if isinstance(dist, FloatDistribution):
                v = self.rng.uniform(dist.low, dist.high)
                if name.startswith("pruning.ratio"):
                    v = min(dist.high, max(dist.low, round(round(v / RATIO_GRID) * RATIO_GRID, 6)))
                return float(v)
            if isinstance(dist, CategoricalDistribution):
                return dist.choices[int(self.rng.integers(len(dist.choices)))]
            return dist.to_external_repr(self.rng.uniform(dist.low, dist.high))  # type: ignore[attr-defined]

        out = [{n: draw(n, d) for n, d in self.dists.items()} for _ in range(N_RANDOM)]
        for i in range(N_LOCAL if front_params else 0):
            base = dict(front_params[i % len(front_params)])
            for n, d in self.dists.items():
                if n.startswith("pruning.ratio") and isinstance(d, FloatDistribution):
                    v = base[n] + self.rng.uniform(-0.05, 0.05)
                    base[n] = float(min(d.high, max(d.low, round(round(v / RATIO_GRID) * RATIO_GRID, 6))))
                elif n.startswith("distillation.") and isinstance(d, FloatDistribution):
                    v = base[n] + self.rng.normal(0, 0.1 * (d.high - d.low))
                    base[n] = float(min(d.high, max(d.low, v)))
            out.append(base)
        return out

    def _choose(self, study: optuna.Study) -> tuple[dict[str, Any], dict[str, float]]:
        trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        base = next((t for t in trials if record.is_baseline(t)), None)
        done = [
            t
            for t in trials
            if t is not base and not t.user_attrs.get(record.SCREENED) and set(self.dists) <= set(t.params)
        ]
        if base is None or len(done) < MIN_TRIALS:
            return {}, {}
        ix = {n: i for i, n in enumerate(self.names)}
        b = base.values
        acc0 = b[ix["accuracy"]]

        def point(acc: float, size: float, lat: float, energy: float) -> list[float]:
            return [
                (acc0 - acc) / acc0,
                size / b[ix["size_bytes"]],
                lat / b[ix["latency_ms"]],
                energy / b[ix["energy_mj"]],
            ]

        ref = [(self.max_drop if self.max_drop is not None else 0.1 * acc0) / acc0, 1.0, 1.0, 1.0]
        pts = np.array([point(*(t.values[ix[n]] for n in ("accuracy", "size_bytes", "latency_ms", "energy_mj"))) for t in done])
        feasible = np.array([all(c <= 0 for c in t.system_attrs.get("constraints", ())) for t in done])
        front = pts[feasible][pareto_mask(pts[feasible])] if feasible.any() else np.empty((0, 4))
        hv0 = hypervolume(front, ref) if len(front) else 0.0

        # accuracy: a GP on the completed trials
        x = np.array([_features(t.params, self.dists) for t in done])
        y = np.array([t.values[ix["accuracy"]] for t in done])
        kernel = ConstantKernel(1.0) * Matern(length_scale=np.full(x.shape[1], 0.5), length_scale_bounds=(0.05, 20.0), nu=2.5) + WhiteKernel(1e-3, (1e-6, 1e-1))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gp = GaussianProcessRegressor(kernel, normalize_y=True, random_state=0).fit(x, y)

        # latency: by widths, interpolated in MACs between measured trials
        by_bits: dict[tuple[Any, Any], list[tuple[float, float]]] = {}
        for t in done:
            key = (t.params.get("quantization.weight_bits"), t.params.get("quantization.activation_bits"))
            macs = self.cheap(t.params)["macs"]
            by_bits.setdefault(key, []).append((macs, t.values[ix["latency_ms"]]))
        base_macs = self.cheap(self.identity)["macs"]

        front_params = [done[i].params for i in np.flatnonzero(feasible)[pareto_mask(pts[feasible])]] if feasible.any() else []
        cands = self._candidates(front_params)
        mu, sd = gp.predict(np.array([_features(c, self.dists) for c in cands]), return_std=True)
        best: dict[str, Any] = {}
        best_gain, predicted = 0.0, {}
        for c, m, s in zip(cands, mu, sd, strict=True):
            fig = self.cheap(c)
            key = (c.get("quantization.weight_bits"), c.get("quantization.activation_bits"))
            seen = sorted(by_bits.get(key, []))
            if seen:
                lat = float(np.interp(fig["macs"], [p[0] for p in seen], [p[1] for p in seen]))
            else:  # no trial of these widths yet: the MACs ratio
                lat = b[ix["latency_ms"]] * fig["macs"] / base_macs
            p = point(m + KAPPA * s, fig["size_bytes"], lat, fig["energy_mj"])
            if not all(pi <= ri for pi, ri in zip(p, ref, strict=True)):
                continue
            gain = hypervolume(np.vstack([front, [p]]) if len(front) else np.array([p]), ref) - hv0
            if gain > best_gain:
                best, best_gain = c, gain
                predicted = {"accuracy_mu": float(m), "accuracy_sd": float(s), "latency_ms": lat, "gain": gain, **fig}
        return best, predicted
