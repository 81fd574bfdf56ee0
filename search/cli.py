"""The ``tradeoff`` command.

Exit codes: 0 success; 2 bad usage, bad spec or bad storage URL (the message names the problem and
nothing is written to storage); 1 a failure while running (a one-line message; the traceback only
with ``--debug``); 130 interrupted by Ctrl-C (the running trial is marked failed; re-run to resume).
"""

from __future__ import annotations

import json
import logging
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import optuna
import typer
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from tradeoff.objectives import Weights
from tradeoff.studies import (
    SpecError,
    StorageError,
    TaskError,
    demo_spec,
    export_bundle,
    load_spec,
    load_study,
    ranked_front,
    resolve_storage_url,
    study_hypervolume,
)
from tradeoff.studies.results import objective_names_of, pick
from tradeoff.studies.spec import Spec

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
WeightsOpt = Annotated[
    str | None,
    typer.Option("--weights", help="Cost weights, e.g. accuracy=0.6,size_bytes=0.2,latency_ms=0.1,energy_mj=0.1."),
]


def _guard(fn: Callable[[], T]) -> T:
    """Run a command body, turning known errors into a message and an exit code."""
    try:
        return fn()
    except USAGE_ERRORS as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        err.print("interrupted: the running trial was marked failed; run the same command again to resume.")
        raise typer.Exit(130) from None
    except (typer.Exit, typer.Abort):
        raise
    except Exception as exc:
        if STATE["debug"]:
            traceback.print_exc()
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        err.print(f"[bold red]error:[/] {msg}", highlight=False)
        if not STATE["debug"]:
            err.print("(run with --debug for the traceback)")
        raise typer.Exit(1) from None


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


def _run(spec: Spec, storage: str | None, trials: int | None) -> None:
    url = resolve_storage_url(storage, spec.study.storage)
    total = trials or spec.study.n_trials
    err.print(f"study [bold]{spec.study.name}[/] · task {spec.task.name} · {total} trials · storage {url}")
    progress = Progress(
        TextColumn("[bold]trials"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.description}"),
        console=err,
    )

    def on_event(ev: TrialEvent) -> None:
        last = _fmt_values(ev.values) if ev.values else f"FAILED ({ev.error})"
        progress.update(bar, completed=ev.done, description=f"front {ev.front_size} · #{ev.number}: {last}")

    with progress:
        bar = progress.add_task("building the task (teacher, cached outputs)", total=total)
        study = Runner(spec, url, n_trials=trials, on_event=on_event).run()
    _print_front(study, None, as_json=False)


def _print_front(study: optuna.Study, weights: Weights | None, *, as_json: bool) -> None:
    entries = ranked_front(study, weights)
    if as_json:
        print(json.dumps([e.as_json() for e in entries], indent=2))
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
        "accuracy measured on the validation set; size computed at the chosen bit-widths; latency measured "
        "on the executable form (see executed_as), interleaved with the baseline; energy estimated by a "
        "per-operation model (horowitz-isscc2014-45nm/v1)",
        style="dim",
    )


@app.command()
def demo(trials: TrialsOpt = None, storage: StorageOpt = None) -> None:
    """Run the demo search on the built-in digits task (an SQLite file in this folder).

    Example: tradeoff demo --trials 12
    """
    _guard(lambda: _run(demo_spec(), storage, trials))


@app.command()
def launch(
    spec: Annotated[Path, typer.Argument(help="The study spec (TOML).")],
    trials: TrialsOpt = None,
    storage: StorageOpt = None,
) -> None:
    """Create or resume the study a spec describes and run it to its trial budget.

    Example: tradeoff launch my-study.toml --trials 40
    """
    _guard(lambda: _run(load_spec(spec), storage, trials))


@app.command()
def pareto(
    study: Annotated[str, typer.Argument(help="Study name.")],
    storage: StorageOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the front as JSON.")] = False,
    weights: WeightsOpt = None,
) -> None:
    """Show the feasible Pareto front, ranked by weighted cost.

    Example: tradeoff pareto digits-demo --json
    """

    def body() -> None:
        s = load_study(study, resolve_storage_url(storage))
        _print_front(s, _parse_weights(weights, s), as_json=as_json)

    _guard(body)


@app.command("export")
def export_cmd(
    study: Annotated[str, typer.Argument(help="Study name.")],
    pick_rule: Annotated[str, typer.Option("--pick", help="knee, cost, or a trial number.")] = "knee",
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Bundle folder (default tradeoff-export/STUDY).")
    ] = None,
    storage: StorageOpt = None,
    weights: WeightsOpt = None,
) -> None:
    """Write the chosen config and its provenance to DIR/config.json.

    Example: tradeoff export digits-demo --pick knee --out ./best
    """

    def body() -> None:
        if pick_rule not in ("knee", "cost") and not pick_rule.isdigit():
            raise SpecError(f"--pick must be knee, cost or a trial number; got {pick_rule!r}.")
        s = load_study(study, resolve_storage_url(storage))
        w = _parse_weights(weights, s)
        path = export_bundle(s, out_dir or Path("tradeoff-export") / study, rule=pick_rule, weights=w)
        cfg = json.loads(path.read_text())
        out.print(f"exported trial {cfg['trial']} ({pick_rule}) of {study} to {path}")
        out.print(_fmt_values(cfg["values"]) + f" · cost {cfg['cost']:.3f}")

    _guard(body)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
