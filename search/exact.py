"""Sampler ``exact``: compute the cheap objectives, model only what needs training.

Size (or whichever complexity figure the study minimises) and the modelled energy of a config are known
before any training: prune a copy of the teacher to the config's ratio and count its bytes and MACs at
the config's widths. A TPE over four objectives has to *learn* that relation from trials. This sampler
computes it, and spends the trials on what only a trial can tell:

* **complexity and energy**, exact for every candidate (:class:`CheapFigures`): the pruned structure is
  cached per ratio, and candidates' ratios are drawn on a 0.01 grid, so the figures are the ones a trial
  of that config records before fine-tuning. Energy is exact where it is *estimated* by the energy model
  (no counter on the target); where a counter measures it, it is interpolated like latency;
* **latency**, interpolated in MACs between the measured trials of the same widths (the same kind of
  executable), or the baseline's latency times the MACs ratio when no trial of those widths has run;
* **accuracy**, a Gaussian process (scikit-learn: Matern 5/2 plus white noise) on the completed trials,
  read at its upper confidence bound ``mu + KAPPA * sigma``;
* **the choice**: of :data:`N_RANDOM` uniform candidates and :data:`N_LOCAL` near the front, the one whose
  optimistic point adds the most hypervolume to the front of the completed feasible trials, in the
  study's normalised space (SMS-EGO: Ponweiser et al., PPSN 2008, with the known objectives exact
  instead of modelled). Trials other workers are running count on that front at the GP's mean (a
  "believer"), so a candidate their expected result already dominates adds nothing, and a candidate
  equal to a running trial is never picked. The GP is not refitted on that belief (a "Kriging
  believer", Ginsbourger et al. 2010): that was measured, and with two workers it did worse. Candidates
  whose exact figures already break a size or energy limit are skipped (a trial would be screened).

Before :data:`MIN_TRIALS` completed trials, when no candidate adds anything, or in a study that tradeoff
did not create (no stored spec), the multivariate TPE that ``auto`` builds decides instead. Each trial's
``suggested_by`` attribute says which chose its config (``"model"`` or ``"tpe"``).

The task is loaded from the study's stored spec the first time the model decides (in each worker
process), since the sampler is built before the task.

Measured in docs/BENCHMARKS.md (issue 25, "Candidate tradeoff-1w-exact"), with one worker: fewer trials than
TPE to 80-90 % of the best hypervolume on digits and fashion-mnist. Not ``auto``'s choice yet.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution
from optuna.trial import FrozenTrial, TrialState
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel
from torch import nn

from tradeoff.objectives import Complexity, EnergyMj, EvalContext, constraint_values
from tradeoff.objectives.energy import PJ_PER_MJ, open_counter
from tradeoff.objectives.pareto import hypervolume, pareto_mask, reference_point
from tradeoff.spaces import ApplyContext, RecipeSpace
from tradeoff.spaces.distillation import DEFAULT_LR
from tradeoff.studies import Spec, load_task, parse_spec, record

KAPPA = 1.0  # optimism of the accuracy bound: one standard deviation, the usual UCB default (not tuned)
MIN_TRIALS = 6  # completed non-baseline trials before the GP is trusted: the auto warm starts are five
N_RANDOM = 256  # uniform candidates per suggestion...
N_LOCAL = 64  # ...and as many again near the current front (ratio +-0.05, the same widths)
RATIO_GRID = 0.01  # candidates' ratios are drawn on this grid, so the cached pruned structures are exact
LOCAL_RATIO_STEP = 0.05  # how far a local candidate's pruning ratio moves from the front member's
LOCAL_SPREAD = 0.1  # a local candidate's distillation knobs move by this share of their range (1 sigma)


def _low(dist: BaseDistribution) -> Any:
    return dist.choices[0] if isinstance(dist, CategoricalDistribution) else dist.low  # type: ignore[attr-defined]


def _on_grid(value: float, dist: FloatDistribution) -> float:
    return float(min(dist.high, max(dist.low, round(round(value / RATIO_GRID) * RATIO_GRID, 6))))


class CheapFigures:
    """The figures of a config known before any training: complexity figures, MACs, modelled energy.

    Args:
        space: The study's recipe space.
        model: The trained teacher (never modified: each ratio prunes a deep copy).
        example_inputs: One forward pass at the target batch size.
        complexity: The study's complexity objective (``size_bytes``, ``macs``, ...).
        energy_exact: Whether energy is the energy model's estimate (no counter), so computed here.

    Example:
        >>> import torch
        >>> from tradeoff.studies import parse_spec
        >>> m = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 10))
        >>> spec = parse_spec({"study": {"name": "c"}, "task": {"name": "digits"}})
        >>> cheap = CheapFigures(spec.recipe_space(m), m, (torch.randn(1, 1, 8, 8),))
        >>> fp32 = {"pruning.ratio": 0.0, "quantization.weight_bits": 32, "quantization.activation_bits": 32}
        >>> int8 = {"pruning.ratio": 0.5, "quantization.weight_bits": 8, "quantization.activation_bits": 32}
        >>> cheap(int8)["size_bytes"] < cheap(fp32)["size_bytes"] / 4
        True
    """

    def __init__(
        self,
        space: RecipeSpace,
        model: nn.Module,
        example_inputs: tuple[Any, ...],
        *,
        complexity: str = "size_bytes",
        energy_exact: bool = True,
    ) -> None:
        self.space = space.resolved(DEFAULT_LR)  # the rate changes no figure here; "auto" must resolve to sample
        self.dists = space.distributions()
        self.model, self.inputs = model, example_inputs
        self.complexity = Complexity(complexity)
        self.energy = EnergyMj(source="model") if energy_exact else None
        self._pruned: dict[str, nn.Module] = {}
        self._figures: dict[tuple[str, str], dict[str, float]] = {}

    def __call__(self, params: Mapping[str, Any]) -> dict[str, float]:
        """The figures of the config ``params`` (a knob left out that changes none of them takes any value)."""
        full = {n: params.get(n, _low(d)) for n, d in self.dists.items()}
        recipe = self.space.sample(optuna.trial.FixedTrial(full))
        q = recipe.quantization
        key = (repr(recipe.pruning), repr(q))  # frozen dataclasses: every field, in order
        if key not in self._figures:
            prune_key = repr(recipe.pruning)
            if prune_key not in self._pruned:
                self._pruned[prune_key] = recipe.pruning.apply_(copy.deepcopy(self.model), ApplyContext(self.inputs))
            model = self._pruned[prune_key]
            ctx = EvalContext(
                example_inputs=self.inputs,
                weight_bits=q.weight_bits_by_layer(model),
                activation_bits=q.activation_bits,
            )
            figures: dict[str, float] = {k: float(v) for k, v in ctx.profile(model).figures().items()}
            figures[self.complexity.name] = self.complexity.measure(model, ctx).value
            if self.energy is not None:
                figures["energy_mj"] = sum(self.energy.estimate(model, ctx).values()) / PJ_PER_MJ
            self._figures[key] = figures
        return self._figures[key]


def _features(params: Mapping[str, Any], dists: Mapping[str, BaseDistribution]) -> list[float]:
    """Each knob scaled to [0, 1]: floats by their range, widths by log2, other categories by index."""
    out = []
    for name, dist in dists.items():
        v = params[name]
        if isinstance(dist, FloatDistribution):
            out.append((float(v) - dist.low) / ((dist.high - dist.low) or 1.0))
        elif isinstance(dist, CategoricalDistribution) and all(isinstance(c, int) and c > 0 for c in dist.choices):
            lo, hi = math.log2(min(dist.choices)), math.log2(max(dist.choices))
            out.append((math.log2(v) - lo) / ((hi - lo) or 1.0))
        elif isinstance(dist, CategoricalDistribution):
            out.append(dist.choices.index(v) / max(1, len(dist.choices) - 1))
        else:
            out.append(float(dist.to_internal_repr(v)))
    return out


@dataclass
class _Context:
    """What the model needs of the study, built once per process from the study's stored spec."""

    spec: Spec
    dists: dict[str, BaseDistribution]
    cheap: CheapFigures
    names: tuple[str, ...]
    identity: dict[str, Any]


class ExactSampler(optuna.samplers.BaseSampler):
    """SMS-EGO over accuracy with the cheap objectives computed (module docstring); TPE where it cannot decide.

    Args:
        seed: Seeds the candidates and the fallback TPE.

    Example:
        >>> sampler = ExactSampler(seed=0)
        >>> study = optuna.create_study(directions=["minimize"], sampler=sampler)  # not a tradeoff study: TPE
        >>> study.optimize(lambda t: t.suggest_float("x", 0, 1) ** 2, n_trials=3)
        >>> sampler.decided["fallback"]
        3
    """

    def __init__(self, *, seed: int | None = None) -> None:
        self.rng = np.random.default_rng(seed)
        with warnings.catch_warnings():  # multivariate TPE is experimental in name only; it is Optuna's advice
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            # the same TPE that ``auto`` builds: constant_liar keeps parallel workers apart in its own picks
            self.fallback = optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)
        self.decided: dict[str, int] = {"model": 0, "fallback": 0}  # how many suggestions each made
        self._context: _Context | None = None

    # ---------------------------------------------------------------- Optuna's sampler interface
    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        ctx = self.context(study)  # every knob of the space: the model suggests them all at once
        return dict(ctx.dists) if ctx is not None else self.fallback.infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if "fixed_params" in trial.system_attrs:  # an enqueued trial (warm start, retry): nothing to choose
            return {}
        params = self._choose(study, trial)
        self.decided["model" if params else "fallback"] += 1
        if self._context is not None:  # a tradeoff study: say on the trial who chose its config
            who = "model" if params else "tpe"
            study._storage.set_trial_user_attr(trial._trial_id, record.SUGGESTED_BY, who)
        if params:
            return params
        return self.fallback.sample_relative(study, trial, self.fallback.infer_relative_search_space(study, trial))

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

    # ---------------------------------------------------------------- the model
    def context(self, study: optuna.Study) -> _Context | None:
        """The study's spec, space and cheap figures (the task loaded once); ``None`` for a study tradeoff did
        not create, whose objectives this sampler cannot compute."""
        if self._context is None:
            stored = study.user_attrs.get(record.STUDY_SPEC)
            if stored is None:
                return None
            spec = parse_spec(stored, f"study {study.study_name!r}")
            task = load_task(spec.task.name, spec.task.kwargs)
            space = spec.recipe_space(task.model)
            inputs = tuple(x[: spec.target.batch_size] for x in task.example_inputs)
            exact_energy = open_counter(spec.target.energy, spec.target.device) is None
            cheap = CheapFigures(
                space, task.model, inputs, complexity=spec.objectives.complexity, energy_exact=exact_energy
            )
            dists, identity = space.distributions(), space.identity_params()
            self._context = _Context(spec, dists, cheap, spec.objective_names(), identity)
        return self._context

    def _candidates(
        self, dists: Mapping[str, BaseDistribution], front_params: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        def draw(name: str, dist: BaseDistribution) -> Any:
            if isinstance(dist, FloatDistribution):
                v = float(self.rng.uniform(dist.low, dist.high))
                return _on_grid(v, dist) if name.startswith("pruning.ratio") else v
            if isinstance(dist, CategoricalDistribution):
                return dist.choices[int(self.rng.integers(len(dist.choices)))]
            return dist.to_external_repr(self.rng.uniform(dist.low, dist.high))  # type: ignore[attr-defined]

        out = [{n: draw(n, d) for n, d in dists.items()} for _ in range(N_RANDOM)]
        for i in range(N_LOCAL if front_params else 0):
            near = dict(front_params[i % len(front_params)])
            for n, d in dists.items():
                if n.startswith("pruning.ratio") and isinstance(d, FloatDistribution):
                    near[n] = _on_grid(near[n] + self.rng.uniform(-LOCAL_RATIO_STEP, LOCAL_RATIO_STEP), d)
                elif n.startswith("distillation.") and isinstance(d, FloatDistribution):
                    v = near[n] + self.rng.normal(0, LOCAL_SPREAD * (d.high - d.low))
                    near[n] = float(min(d.high, max(d.low, v)))
            out.append(near)
        return out

    def _choose(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, Any]:
        """The candidate adding the most optimistic hypervolume, or ``{}`` when the model cannot decide."""
        ctx = self.context(study)
        if ctx is None:
            return {}
        dists, names = ctx.dists, ctx.names
        trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
        base = next((t for t in trials if t.state == TrialState.COMPLETE and record.is_baseline(t)), None)
        usable = [t for t in trials if t is not base and set(dists) <= set(t.params) and t.number != trial.number]
        done = [t for t in usable if t.state == TrialState.COMPLETE and not t.user_attrs.get(record.SCREENED)]
        running = [t for t in usable if t.state == TrialState.RUNNING]
        if base is None or len(done) < MIN_TRIALS:
            return {}
        acc_i, cx_i, lat_i, en_i = range(4)  # objective_names(): accuracy, complexity, latency, energy
        b = base.values
        acc0 = b[acc_i]
        cx_name, energy_exact = names[cx_i], ctx.cheap.energy is not None

        def point(values: Sequence[float]) -> list[float]:
            return [(acc0 - values[0]) / acc0, values[1] / b[cx_i], values[2] / b[lat_i], values[3] / b[en_i]]

        ref = reference_point(acc0, ctx.spec.constraints_().max_accuracy_drop).tolist()
        pts = np.array([point(t.values) for t in done])
        feasible = np.array([all(c <= 0 for c in t.system_attrs.get("constraints", ())) for t in done])
        on_front = np.flatnonzero(feasible)[pareto_mask(pts[feasible])] if feasible.any() else np.array([], int)

        # accuracy: a GP on the completed trials
        x = np.array([_features(t.params, dists) for t in done])
        y = np.array([t.values[acc_i] for t in done])
        kernel = ConstantKernel(1.0) * Matern(
            length_scale=np.full(x.shape[1], 0.5), length_scale_bounds=(0.05, 20.0), nu=2.5
        ) + WhiteKernel(1e-3, (1e-6, 1e-1))
        with warnings.catch_warnings():  # convergence notes at the bounds are expected with few trials
            warnings.simplefilter("ignore")
            gp = GaussianProcessRegressor(kernel, normalize_y=True, random_state=0).fit(x, y)
        # other workers' trials, believed to end at the GP's mean (on the front only: a Kriging believer,
        # which also refits the GP on that belief, was measured worse with two workers; docs/BENCHMARKS.md)
        believed = gp.predict(np.array([_features(t.params, dists) for t in running])) if running else []

        # latency (and energy where a counter measures it): by widths, interpolated in MACs between trials
        def widths(params: Mapping[str, Any]) -> tuple[Any, Any]:
            return params.get("quantization.weight_bits"), params.get("quantization.activation_bits")

        measured: dict[tuple[Any, Any], list[tuple[float, float, float]]] = {}
        for t in done:
            measured.setdefault(widths(t.params), []).append(
                (ctx.cheap(t.params)["macs"], t.values[lat_i], t.values[en_i])
            )
        base_macs = ctx.cheap(ctx.identity)["macs"]

        def predicted(params: Mapping[str, Any], accuracy: float) -> tuple[list[float], dict[str, float]]:
            fig = ctx.cheap(params)
            seen = sorted(measured.get(widths(params), []))
            if seen:
                lat = float(np.interp(fig["macs"], [p[0] for p in seen], [p[1] for p in seen]))
                energy = float(np.interp(fig["macs"], [p[0] for p in seen], [p[2] for p in seen]))
            else:  # no trial of these widths yet: the MACs ratio
                lat = b[lat_i] * fig["macs"] / base_macs
                energy = b[en_i] * fig["macs"] / base_macs
            if energy_exact:
                energy = fig["energy_mj"]
            return point([accuracy, fig[cx_name], lat, energy]), {**fig, "latency_ms": lat, "energy_mj": energy}

        front = [pts[i] for i in on_front]
        front += [predicted(t.params, m)[0] for t, m in zip(running, believed, strict=True)]
        front_arr = np.array(front) if front else np.empty((0, 4))
        hv0 = hypervolume(front_arr, ref) if len(front_arr) else 0.0

        limits = replace(ctx.spec.constraints_(), max_accuracy_drop=None)  # those no training can mend
        cands = self._candidates(dists, [done[i].params for i in on_front])
        mu, sd = gp.predict(np.array([_features(c, dists) for c in cands]), return_std=True)
        best: dict[str, Any] = {}
        best_gain = 0.0
        taken = [t.params for t in running]
        baseline = {"accuracy": acc0, "latency_ms": b[lat_i], "energy_mj": b[en_i], cx_name: b[cx_i]}
        for c, m, s in zip(cands, mu, sd, strict=True):
            if c in taken:  # another worker is running this very candidate
                continue
            p, figures = predicted(c, m + KAPPA * s)
            if not all(pi <= ri for pi, ri in zip(p, ref, strict=True)):
                continue
            if any(v > 0 for v in constraint_values({**figures, "accuracy": acc0}, baseline, limits).values()):
                continue  # a trial of it would be screened: its size or energy already breaks a limit
            gain = hypervolume(np.vstack([front_arr, [p]]) if len(front_arr) else np.array([p]), ref) - hv0
            if gain > best_gain:
                best, best_gain = c, gain
        return best
