"""The ``tradeoff`` command: launch and resume searches, read their results, export and re-apply.

Exit codes: 0 success; 2 bad usage, bad spec or bad storage URL (the message names the problem and
nothing is written to storage); 1 a failure while running (a one-line message; the traceback only
with ``--debug``); 130 interrupted by Ctrl-C (the running trial is marked failed; re-run to resume).
``worker`` and ``dashboard`` commands come with later work.
"""

from __future__ import annotations

import json
import logging
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import optuna
import torch
import typer
from optuna.trial import TrialState
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from tradeoff.objectives import Weights
from tradeoff.studies import (
    ExportError,
    SpecError,
    StorageError,
    TaskError,
    apply_config,
    demo_spec,
    export_bundle,
    feasibility,
    least_violating,
    load_config,
    load_spec,
    load_study,
    open_storage,
    ranked_front,
    record,
    resolve_storage_url,
    study_hypervolume,
)
from tradeoff.studies.export import export_program
from tradeoff.studies.results import Feasibility, ResultsError, Violation, objective_names_of, pick, study_spec
from tradeoff.studies.spec import Spec, demo_spec_text

from .runner import Runner, StudyMismatch, TrialEvent

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Search pruning, bit-widths and distillation jointly for the best compressed model.",
)
out = Console()
err = Console(stderr=True)
T = TypeVar("T")

USAGE_ERRORS = (SpecError, StorageError, StudyMismatch, TaskError)
STATE = {"debug": False}

StorageOpt = Annotated[
    str | None,
    typer.Option("--storage", help="Storage URL (default: $TRADEOFF_STORAGE, else sqlite:///tradeoff.db)."),
]
TrialsOpt = Annotated[
    int | None, typer.Option("--trials", min=1, help="Trials in the study, baseline included (overrides the spec).")
]
WorkersOpt = Annotated[
    str | None,
    typer.Option(
        "--workers",
        help="Processes on this host running trials at once: a count or 'auto' (cores // target.threads, at most 4); "
        "overrides $TRADEOFF_WORKERS and the spec's [search] workers. 1 makes a seeded study reproducible.",
    ),
]
WeightsOpt = Annotated[
    str | None,
    typer.Option("--weights", help="Cost weights, e.g. accuracy=0.6,size_bytes=0.2,latency_ms=0.1,energy_mj=0.1."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of a table.")]
StudyArg = Annotated[str, typer.Argument(help="Study name.")]


def _guard(fn: Callable[[], T]) -> T:
    """Run a command body, turning known errors into a message and an exit code."""
    try:
        return fn()
    except USAGE_ERRORS as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        err.print(
            "interrupted: the running trial was marked failed; run the same command again to resume.", soft_wrap=True
        )
        raise typer.Exit(130) from None
    except (typer.Exit, typer.Abort):
        raise
    except Exception as exc:
        if STATE["debug"]:
            traceback.print_exc()
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        err.print(f"[bold red]error:[/] {msg}", highlight=False, soft_wrap=True)
        if not STATE["debug"]:
            err.print("(run with --debug for the traceback)")
        raise typer.Exit(1) from None


def _json(data: Any) -> None:
    print(json.dumps(data, indent=2))


def _parse_weights(text: str | None, study: optuna.Study) -> Weights | None:
    if text is None:
        return None
    try:
        return Weights.parse(text, objective_names_of(study))
    except ValueError as exc:
        raise SpecError(f"--weights: {exc}") from None


@app.callback()
def _root(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on failure.")] = False) -> None:
    STATE["debug"] = debug
    optuna.logging.set_verbosity(logging.DEBUG if debug else logging.WARNING)
    if not debug:
        warnings.filterwarnings("ignore", module="torch_pruning")
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


# ---------------------------------------------------------------------------------- formatting


def _fmt_complexity(name: str, value: float) -> str:
    return f"{value / 1024:.1f}" if name == "size_bytes" else f"{value:.3g}"


def _complexity_header(name: str) -> str:
    return "KiB" if name == "size_bytes" else name


def _fmt_values(values: dict[str, float]) -> str:
    name = list(values)[1]  # the complexity objective
    return (
        f"acc {values['accuracy']:.4f} · {_fmt_complexity(name, values[name])} {_complexity_header(name)} · "
        f"{values['latency_ms']:.3f} ms · {values['energy_mj']:.3g} mJ"
    )


def _counts(study: optuna.Study) -> dict[str, int]:
    """Trials by state; ``stopped`` (PRUNED at a fidelity rung), ``screened`` and ``duplicate`` besides."""
    counts = {s: 0 for s in ("complete", "fail", "running", "stopped", "screened", "duplicate")}
    for t in study.get_trials(deepcopy=False):
        key = "stopped" if t.state == TrialState.PRUNED else t.state.name.lower()
        counts[key] = counts.get(key, 0) + 1
        counts["screened"] += bool(t.user_attrs.get(record.SCREENED))
        counts["duplicate"] += record.DUPLICATE_OF in t.user_attrs
    return counts


CONSTRAINT_LABELS = {
    "max_accuracy_drop": "accuracy drop",
    "max_latency_ms": "latency",
    "max_size_bytes": "size",
    "max_energy_mj": "energy",
}
LEAST_SHOWN = 5  # least-violating trials listed when no trial is feasible


def _fmt_constraint(name: str, value: float) -> str:
    """A limit, or by how much it is missed, in the constraint's unit (accuracy drop in points)."""
    if name == "max_accuracy_drop":
        return f"{value * 100:.2f} pt"
    if name == "max_latency_ms":
        return f"{value:.3f} ms"
    if name == "max_size_bytes":
        return f"{value:,.0f} B" if abs(value) < 10 * 1024 else f"{value / 1024:.1f} KiB"
    if name == "max_energy_mj":
        return f"{value:.3g} mJ"
    return f"{value:.4g}"


def _fmt_limits(limits: dict[str, float]) -> str:
    return ", ".join(f"{CONSTRAINT_LABELS.get(k, k)} <= {_fmt_constraint(k, v)}" for k, v in limits.items())


def _infeasible_json(feas: Feasibility, least: list[Violation]) -> dict[str, Any]:
    return {
        "feasible": False,
        "constraints": feas.limits,
        "candidates": feas.candidates,
        "least_violating": [v.as_json() for v in least],
    }


MISS_HEADERS = {  # column headers of by how much each limit is missed, in the unit of the column
    "max_accuracy_drop": "drop+ pt",
    "max_latency_ms": "+ms",
    "max_size_bytes": "+B",
    "max_energy_mj": "+mJ",
}


def _fmt_miss(name: str, value: float) -> str:
    """By how much a constraint is missed, in the unit its column header names; ``ok`` when met."""
    if value <= 0:
        return "ok"
    if name == "max_accuracy_drop":
        return f"{value * 100:.2f}"
    if name == "max_latency_ms":
        return f"{value:.3f}"
    if name == "max_size_bytes":
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _print_least_violating(study: optuna.Study, feas: Feasibility, least: list[Violation]) -> None:
    """Say that no trial meets the constraints, then list the trials that come closest."""
    out.print(
        f"study {study.study_name}: [bold]no trial meets the constraints[/] ({_fmt_limits(feas.limits)}); "
        f"all {feas.candidates} completed candidates miss at least one, and so does the baseline. To get a "
        "feasible front, loosen \\[constraints] in the spec or run more trials (tradeoff launch SPEC --trials N).",
        highlight=False,
    )
    table = Table(
        title=f"the {len(least)} least-violating trials of {study.study_name}, closest to the constraints first",
        caption="bits = weight/activation · drop+ pt, +ms, +B, +mJ: by how much a limit is missed (ok = met) · "
        "viol = the misses summed, each relative to the baseline accuracy (accuracy drop) or to its limit",
        box=box.SIMPLE_HEAD,
        padding=(0, 0),
        pad_edge=False,
    )
    complexity = objective_names_of(study)[1]
    names = list(feas.limits) or sorted({k for v in least for k in v.constraints})
    for col in (
        "trial",
        "prune",
        "bits",
        "acc",
        _complexity_header(complexity),
        "ms",
        "mJ",
        *(MISS_HEADERS.get(n, f"{n}+") for n in names),
        "viol",
        "cost",
    ):
        table.add_column(col, justify="right", no_wrap=True)
    for v in least:
        r = v.trial.user_attrs.get("recipe") or {}
        p, q = r.get("pruning", {}), r.get("quantization", {})
        table.add_row(
            str(v.trial.number),
            f"{p.get('ratio', 0):.2f}",
            f"{q.get('weight_bits', 32)}/{q.get('activation_bits', 32)}",
            f"{v.values['accuracy']:.4f}",
            _fmt_complexity(complexity, v.values[complexity]),
            f"{v.values['latency_ms']:.3f}",
            f"{v.values['energy_mj']:.3g}",
            *("-" if n not in v.constraints else _fmt_miss(n, v.constraints[n]) for n in names),
            f"{v.violation:.3f}",
            f"{v.cost:.3f}",
        )
    out.print(table)


def _hypervolume_or_none(study: optuna.Study) -> float | None:
    try:
        return study_hypervolume(study)
    except ResultsError:
        return None


# ---------------------------------------------------------------------------------- run


def _run(spec: Spec, storage: str | None, trials: int | None, workers: str | None = None) -> None:
    url = resolve_storage_url(storage, spec.study.storage)
    total = trials or spec.study.n_trials
    runner = Runner(spec, url, n_trials=trials, workers=workers)  # a bad worker count is refused before any work
    err.print(
        f"study [bold]{spec.study.name}[/] · task {spec.task.name} · {total} trials · storage {url} · "
        f"{runner.workers} worker(s) ({runner.workers_reason})",
        highlight=False,
    )
    live = err.is_terminal  # a live bar on a terminal; one plain line per trial in logs and pipes
    progress = Progress(
        TextColumn("[bold]trials"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.description}"),
        console=err,
        disable=not live,
    )

    def on_event(ev: TrialEvent) -> None:
        if ev.state == "STOPPED":
            last = "stopped at a fidelity rung (dominated there)"
        elif ev.values is None:
            last = f"FAILED ({ev.error})" if ev.error else f"{ev.state.lower()} of trial {ev.duplicate_of}"
        else:
            last = _fmt_values(ev.values)
            if ev.state == "SCREENED":
                last += " · screened: a size/latency/energy limit fails before fine-tuning"
            elif ev.state == "DUPLICATE":
                last += f" · same recipe as trial {ev.duplicate_of}: result reused"
        hv = f"{ev.hypervolume:.4f}" if ev.hypervolume is not None else "-"
        line = f"front {ev.front_size} · hv {hv} · #{ev.number}: {last}"
        progress.update(bar, completed=ev.done, description=line)
        if not live:
            err.print(
                f"trial {ev.number} {ev.state.lower()} ({ev.done}/{ev.total}) · {line}", highlight=False, soft_wrap=True
            )

    with progress:
        bar = progress.add_task("building the task (teacher, cached outputs)", total=total)
        runner.on_event = on_event
        study = runner.run()
    _print_front(study, None, as_json=False)


def _print_front(study: optuna.Study, weights: Weights | None, *, as_json: bool) -> None:
    entries = ranked_front(study, weights)
    least = least_violating(study, LEAST_SHOWN, weights) if not entries else []
    if least:  # completed candidates, none feasible: a valid answer, with the trials closest to feasible
        feas = feasibility(study)
        if as_json:
            _json(_infeasible_json(feas, least))
        else:
            _print_least_violating(study, feas, least)
        return
    if as_json:
        _json([e.as_json() for e in entries])
        return
    if not entries:
        out.print(f"study {study.study_name}: no feasible trial on the front yet.")
        return
    knee = pick(study, "knee", weights).trial.number
    table = Table(
        title=f"Pareto front of {study.study_name}: {len(entries)} feasible trials, lowest cost first",
        caption="* knee point · b baseline · prune = channel ratio removed · wb/ab = weight/activation bits",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    complexity = objective_names_of(study)[1]
    for col in (
        "trial",
        "prune",
        "wb",
        "ab",
        "T",
        "alpha",
        "accuracy",
        _complexity_header(complexity),
        "ms",
        "mJ",
        "cost",
    ):
        table.add_column(col, justify="right", no_wrap=True)
    for e in entries:
        r = e.trial.user_attrs.get("recipe") or {}
        p, q, d = r.get("pruning", {}), r.get("quantization", {}), r.get("distillation", {})
        distils = d.get("steps", 0) > 0
        marks = ("*" if e.trial.number == knee else "") + ("b" if e.trial.user_attrs.get("role") == "baseline" else "")
        table.add_row(
            f"{e.trial.number}{marks}",
            f"{p.get('ratio', 0):.2f}",
            str(q.get("weight_bits", 32)),
            str(q.get("activation_bits", 32)),
            f"{d['temperature']:.1f}" if distils else "-",
            f"{d['alpha']:.2f}" if distils else "-",
            f"{e.values['accuracy']:.4f}",
            _fmt_complexity(complexity, e.values[complexity]),
            f"{e.values['latency_ms']:.3f}",
            f"{e.values['energy_mj']:.3g}",
            f"{e.cost:.3f}",
        )
    out.print(table)
    out.print(f"hypervolume {study_hypervolume(study):.4f} in the baseline-normalised space")
    out.print(
        "accuracy measured on the validation set; complexity computed at the chosen bit-widths; latency measured "
        "on the deployable form (see deployable_form), interleaved with the baseline; energy " + _energy_source(entries),
        style="dim",
    )


def _energy_source(entries: list) -> str:
    sources = {e.trial.user_attrs.get("provenance", {}).get("energy_mj", {}).get("source") for e in entries}
    return "measured (hardware counter)" if sources == {"measured"} else "estimated by horowitz-isscc2014-45nm/v1"


@app.command()
def demo(trials: TrialsOpt = None, storage: StorageOpt = None, workers: WorkersOpt = None) -> None:
    """Run the demo search on the built-in digits task (an SQLite file in this folder).

    Example: tradeoff demo --trials 12
    """
    _guard(lambda: _run(demo_spec(), storage, trials, workers))


@app.command()
def launch(
    spec: Annotated[Path, typer.Argument(help="The study spec (TOML).")],
    trials: TrialsOpt = None,
    storage: StorageOpt = None,
    workers: WorkersOpt = None,
) -> None:
    """Create or resume the study a spec describes and run it to its trial budget.

    Ctrl-C stops after marking the running trials failed; the same command resumes.

    Example: tradeoff launch my-study.toml --trials 40 --workers 2
    """
    _guard(lambda: _run(load_spec(spec), storage, trials, workers))


@app.command()
def init(
    path: Annotated[Path, typer.Argument(help="Where to write the spec.")] = Path("tradeoff.toml"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented starter spec (the demo's, renamed) to edit and launch.

    Example: tradeoff init my-study.toml && tradeoff launch my-study.toml
    """

    def body() -> None:
        if path.exists() and not force:
            raise SpecError(f"{path} exists; choose another path or pass --force to overwrite it.")
        name = path.stem if path.stem not in ("", ".") else "my-study"
        text = demo_spec_text().replace('name = "digits-demo"', f'name = "{name}"', 1)
        path.write_text(text, encoding="utf-8")
        out.print(f"wrote {path}: edit [task], [space.*], [objectives], then `tradeoff launch {path}`")

    _guard(body)


# ---------------------------------------------------------------------------------- read


@app.command("ls")
def ls_cmd(storage: StorageOpt = None, as_json: JsonOpt = False) -> None:
    """List the studies in the storage with their progress.

    Example: tradeoff ls --json
    """

    def body() -> None:
        url = resolve_storage_url(storage)
        store = open_storage(url, must_exist=True)
        rows = []
        for summary in optuna.get_all_study_summaries(store, include_best_trial=False):
            study = optuna.load_study(study_name=summary.study_name, storage=store)
            try:
                spec: Spec | None = study_spec(study)
            except ResultsError:
                spec = None  # an Optuna study tradeoff did not create
            counts = _counts(study)
            rows.append(
                {
                    "study": summary.study_name,
                    "task": spec.task.name if spec else None,
                    "complete": counts["complete"],
                    "failed": counts["fail"],
                    "running": counts["running"],
                    "budget": spec.study.n_trials if spec else None,
                    "front": len(study.best_trials) if counts["complete"] else 0,
                    "hypervolume": _hypervolume_or_none(study) if spec else None,
                }
            )
        if as_json:
            _json(rows)
            return
        if not rows:
            out.print(f"no studies in {url}")
            return
        table = Table(title=f"studies in {url}", box=box.SIMPLE_HEAD)
        for col in ("study", "task", "done", "failed", "front", "hypervolume"):
            table.add_column(col, justify="left" if col in ("study", "task") else "right")
        for r in rows:
            hv = f"{r['hypervolume']:.4f}" if r["hypervolume"] is not None else "-"
            done = f"{r['complete']}/{r['budget']}" if r["budget"] else str(r["complete"])
            table.add_row(r["study"], r["task"] or "-", done, str(r["failed"]), str(r["front"]), hv)
        out.print(table)

    _guard(body)


@app.command()
def show(study: StudyArg, storage: StorageOpt = None, as_json: JsonOpt = False, weights: WeightsOpt = None) -> None:
    """Show a study: its spec, budget, progress, best so far and hypervolume.

    When no completed trial meets the constraints, the least-violating trials instead of the best.

    Example: tradeoff show digits-demo
    """

    def body() -> None:
        s = load_study(study, resolve_storage_url(storage))
        spec = study_spec(s)
        w = _parse_weights(weights, s)
        counts = _counts(s)
        front = ranked_front(s, w) if counts["complete"] else []
        least = least_violating(s, LEAST_SHOWN, w) if counts["complete"] and not front else []
        feas = feasibility(s)
        data = {
            "study": s.study_name,
            "task": spec.task.name,
            "objectives": list(objective_names_of(s)),
            "weights": (w or spec.weights()).as_dict(),
            "constraints": {k: v for k, v in spec.constraints.model_dump().items() if v is not None},
            "sampler": spec.study.sampler,
            "sampler_chosen": s.user_attrs.get(record.STUDY_SAMPLER),
            "seed": spec.study.seed,
            "budget": spec.study.n_trials,
            "trials": counts,
            "feasible": bool(front) if front or feas.candidates else None,
            "front_size": len(front),
            "hypervolume": _hypervolume_or_none(s),
            "best_cost": front[0].as_json() if front else None,
            "knee": pick(s, "knee", w).as_json() if front else None,
            "least_violating": [v.as_json() for v in least],
            "spec": spec.to_dict(),
        }
        if as_json:
            _json(data)
            return
        chosen = data["sampler_chosen"]
        sampler = spec.study.sampler
        if chosen and chosen["name"] != sampler:
            sampler = f"{sampler} -> {chosen['name']} ({chosen['reason']})"
        out.print(f"[bold]{s.study_name}[/] · task {spec.task.name} · sampler {sampler} · seed {spec.study.seed}")
        out.print(
            f"trials: {counts['complete']} complete ({counts['screened']} screened before fine-tuning, "
            f"{counts['duplicate']} reusing a duplicate), {counts['stopped']} stopped at a rung, "
            f"{counts['fail']} failed, {counts['running']} running of a budget of {spec.study.n_trials}"
        )
        out.print(f"objectives: {', '.join(data['objectives'])} · weights {data['weights']}")
        if data["constraints"]:
            out.print(f"constraints: {data['constraints']}")
        if least:
            _print_least_violating(s, feas, least)
            return
        hv = data["hypervolume"]
        out.print(
            f"front: {len(front)} feasible trials · hypervolume {hv:.4f}" if hv is not None else "front: none yet"
        )
        for label, key in (("lowest cost", "best_cost"), ("knee", "knee")):
            if data[key]:
                e = data[key]
                out.print(f"{label}: trial {e['trial']} · {_fmt_values(e['values'])} · cost {e['cost']:.3f}")

    _guard(body)


@app.command()
def pareto(study: StudyArg, storage: StorageOpt = None, as_json: JsonOpt = False, weights: WeightsOpt = None) -> None:
    """Show the feasible Pareto front, ranked by weighted cost.

    When no completed trial meets the constraints, says so and lists the least-violating trials (with --json:
    {"feasible": false, "least_violating": [...]}); the exit code is 0 either way.

    Example: tradeoff pareto digits-demo --weights accuracy=1 --json
    """

    def body() -> None:
        s = load_study(study, resolve_storage_url(storage))
        _print_front(s, _parse_weights(weights, s), as_json=as_json)

    _guard(body)


# ---------------------------------------------------------------------------------- export / apply


@app.command("export")
def export_cmd(
    study: StudyArg,
    pick_rule: Annotated[str, typer.Option("--pick", help="knee, cost, or a trial number.")] = "knee",
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Bundle folder (default tradeoff-export/STUDY).")
    ] = None,
    storage: StorageOpt = None,
    weights: WeightsOpt = None,
) -> None:
    """Write the chosen config, the compressed model and a report to a bundle folder.

    The model is rebuilt from the trial's recipe and seed and checked against the trial's figures.

    Example: tradeoff export digits-demo --pick knee --out ./best
    """

    def body() -> None:
        if pick_rule not in ("knee", "cost") and not pick_rule.isdigit():
            raise SpecError(f"--pick must be knee, cost or a trial number; got {pick_rule!r}.")
        s = load_study(study, resolve_storage_url(storage))
        w = _parse_weights(weights, s)
        path = export_bundle(s, out_dir or Path("tradeoff-export") / study, rule=pick_rule, weights=w)
        cfg = json.loads(path.read_text())
        out.print(f"exported trial {cfg['trial']} ({pick_rule}) of {study} to {path.parent}/")
        out.print(_fmt_values(cfg["values"]) + f" · cost {cfg['cost']:.3f}")
        out.print(f"files: {', '.join(cfg.get('files', {}).values()) or 'config.json'}")

    _guard(body)


@app.command()
def apply(
    config: Annotated[Path, typer.Argument(help="An exported config.json.")],
    task: Annotated[str | None, typer.Option("--task", help="Task to apply it to (default: the config's).")] = None,
    out_file: Annotated[Path | None, typer.Option("--out", help="Write the model as a torch.export program.")] = None,
) -> None:
    """Re-apply an exported config to a task's model and check it matches what was exported.

    Exits 1 when a figure is outside its tolerance.

    Example: tradeoff apply best/config.json --task digits --out model.pt2
    """

    def body() -> None:
        try:
            cfg = load_config(config)
        except ExportError as exc:
            raise SpecError(str(exc)) from None
        rebuilt, rows = apply_config(cfg, task_name=task)
        table = Table(title=f"{config}: exported vs re-applied", box=box.SIMPLE_HEAD)
        for col in ("figure", "exported", "re-applied", "tolerance", "ok"):
            table.add_column(col, justify="right")
        for r in rows:
            table.add_row(
                r["figure"],
                f"{r['exported']:.6g}",
                f"{r['rebuilt']:.6g}",
                f"{r['tolerance']:g}",
                "yes" if r["ok"] else "NO",
            )
        out.print(table)
        if out_file is not None:
            torch.export.save(export_program(rebuilt.compressed.scored, rebuilt.example_inputs), out_file)
            out.print(f"wrote {out_file}")
        bad = [r["figure"] for r in rows if not r["ok"]]
        if bad:
            raise ExportError(f"re-applied model differs from the export in {', '.join(bad)} (beyond tolerance).")

    _guard(body)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
