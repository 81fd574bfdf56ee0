"""The ``tradeoff`` command: launch and resume searches, read their results, export and re-apply.

Exit codes: 0 success; 2 bad usage, bad spec or bad storage URL (the message names the problem and
nothing is written to storage); 1 a failure while running (a one-line message; the traceback only
with ``--debug``); 130 interrupted by Ctrl-C (the running trial is marked failed; re-run to resume).
``worker`` joins a study from another host (PostgreSQL); ``dashboard`` serves the read-only web pages.
"""

from __future__ import annotations

import json
import logging
import socket
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import optuna
import torch
import typer

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
from tradeoff.studies.results import pick
from tradeoff.studies.spec import Spec, demo_spec_text, parse_stored_spec
from tradeoff.studies.storage import USE_POSTGRES, hide_password, is_server

from .display import (
    TrialProgress,
    err,
    fmt_values,
    out,
    print_checks,
    print_front,
    print_front_notes,
    print_least_violating,
    print_studies,
    print_summary,
)
from .display_data import LEAST_SHOWN, infeasible_json, parse_weights, study_row, study_summary
from .runner import Runner, StudyMismatch

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Search pruning, bit-widths and distillation jointly for the best compressed model.",
)
T = TypeVar("T")

USAGE_ERRORS = (SpecError, StorageError, StudyMismatch, TaskError)  # the user can fix these: exit 2, nothing written
STATE = {"debug": False}  # set by --debug (the app callback) before any command body runs

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
    except Exception as exc:  # noqa: BLE001 - any other failure is a runtime error: one line, exit 1
        if STATE["debug"]:
            traceback.print_exc()
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        err.print(f"[bold red]error:[/] {msg}", highlight=False, soft_wrap=True)
        if not STATE["debug"]:
            err.print("(run with --debug for the traceback)")
        raise typer.Exit(1) from None


def _json(data: Any) -> None:
    print(json.dumps(data, indent=2))


@app.callback()
def _root(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on failure.")] = False) -> None:
    STATE["debug"] = debug
    optuna.logging.set_verbosity(logging.DEBUG if debug else logging.WARNING)
    if not debug:
        warnings.filterwarnings("ignore", module="torch_pruning")
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


# ---------------------------------------------------------------------------------- run


def _run(
    spec: Spec,
    storage: str | None,
    trials: int | None,
    workers: str | None = None,
    *,
    url: str | None = None,
    budget: int | None = None,
) -> None:
    """Run ``spec``'s study from this host; ``budget``: the study's stored budget a worker joins with."""
    url = url or resolve_storage_url(storage, spec.study.storage)
    total = trials or budget or spec.study.n_trials
    # a bad worker count is refused before any work
    runner = Runner(spec, url, n_trials=trials, workers=workers, keep_budget=budget is not None)
    err.print(
        f"study [bold]{spec.study.name}[/] · task {spec.task.name} · {total} trials · storage {hide_password(url)} · "
        f"{runner.workers} worker(s) on {socket.gethostname()} ({runner.workers_reason})",
        highlight=False,
    )
    runner.on_note = lambda note: err.print(f"tradeoff: {note}", highlight=False, soft_wrap=True)
    with TrialProgress(total) as progress:
        runner.on_event = progress.on_event
        study = runner.run()
    _print_front(study, None, as_json=False)


def _print_front(study: optuna.Study, weights: Weights | None, *, as_json: bool) -> None:
    entries = ranked_front(study, weights)
    least = least_violating(study, LEAST_SHOWN, weights) if not entries else []
    if least:  # completed candidates, none feasible: a valid answer, with the trials closest to feasible
        feas = feasibility(study)
        if as_json:
            _json(infeasible_json(feas, least))
        else:
            print_least_violating(study, feas, least)
        return
    if as_json:
        _json([e.as_json() for e in entries])
        return
    if not entries:
        out.print(f"study {study.study_name}: no feasible trial on the front yet.")
        return
    print_front(study, entries, pick(study, "knee", weights).trial.number)
    print_front_notes(study_hypervolume(study), entries)


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
def worker(study: StudyArg, storage: StorageOpt = None, trials: TrialsOpt = None, workers: WorkersOpt = None) -> None:
    """Join an existing study from this host and run its trials until the study's budget is met.

    Everything is built from what the study stores: its spec, task reference and arguments. The host must build the same teacher and data, and be the same kind of machine (CPU and its kernel flags or GPU, threads, torch), or it is refused (exit 2). The storage is a PostgreSQL database every host reaches (the postgres extra: pip install "tradeoff\\[postgres]"). --trials sets the study's budget for every host.

    Example: tradeoff worker my-study --storage postgresql+psycopg://me:secret@db-host/studies --workers 2
    """

    def body() -> None:
        url = resolve_storage_url(storage)
        if not is_server(url):
            raise StorageError(
                f"tradeoff worker joins a study from another host or process, which an SQLite file ({url}) cannot "
                f"serve safely; {USE_POSTGRES}. On this host alone, `tradeoff launch SPEC --workers N` runs N "
                "workers on SQLite."
            )
        s = load_study(study, url)
        stored = s.user_attrs.get(record.STUDY_SPEC)
        if stored is None:
            raise StorageError(f"study {study!r} stores no tradeoff spec: it was not created by tradeoff launch.")
        spec = parse_stored_spec(stored, f"the spec stored on study {study!r}", resolve_task=True)
        _run(
            spec, None, trials, workers, url=url, budget=int(s.user_attrs.get(record.STUDY_BUDGET, spec.study.n_trials))
        )

    _guard(body)


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
        names = [summary.study_name for summary in optuna.get_all_study_summaries(store, include_best_trial=False)]
        rows = [study_row(optuna.load_study(study_name=name, storage=store)) for name in names]
        if as_json:
            _json(rows)
        else:
            print_studies(url, rows)

    _guard(body)


@app.command()
def show(study: StudyArg, storage: StorageOpt = None, as_json: JsonOpt = False, weights: WeightsOpt = None) -> None:
    """Show a study: its spec, budget, progress, best so far and hypervolume.

    When no completed trial meets the constraints, the least-violating trials instead of the best.

    Example: tradeoff show digits-demo
    """

    def body() -> None:
        s = load_study(study, resolve_storage_url(storage))
        data, feas, least = study_summary(s, weights)
        if as_json:
            _json(data)
            return
        print_summary(data)
        if least:
            print_least_violating(s, feas, least)

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
        _print_front(s, parse_weights(weights, s), as_json=as_json)

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
    formats: Annotated[
        list[str] | None,
        typer.Option(
            "--format",
            help="onnx: also write deployable.onnx (QDQ int8 where the recipe is int8), verified in ONNX Runtime; "
            "needs pip install 'tradeoff[onnx]'. Repeatable; torch files are always written.",
        ),
    ] = None,
) -> None:
    """Write the chosen config, the compressed model and a report to a bundle folder.

    The model is rebuilt from the trial's recipe and seed and checked against the trial's figures.
    With --format onnx the ONNX file's accuracy and latency in ONNX Runtime are checked and reported.

    Example: tradeoff export digits-demo --pick knee --out ./best
    """

    def body() -> None:
        if pick_rule not in ("knee", "cost") and not pick_rule.isdigit():
            raise SpecError(f"--pick must be knee, cost or a trial number; got {pick_rule!r}.")
        s = load_study(study, resolve_storage_url(storage))
        w = parse_weights(weights, s)
        fmts = ("torch", *[f for f in formats or [] if f != "torch"])
        bad = [f for f in fmts if f not in ("torch", "onnx")]
        if bad:
            raise SpecError(f"--format must be torch or onnx; got {', '.join(bad)}.")
        path = export_bundle(s, out_dir or Path("tradeoff-export") / study, rule=pick_rule, weights=w, formats=fmts)
        cfg = json.loads(path.read_text())
        out.print(f"exported trial {cfg['trial']} ({pick_rule}) of {study} to {path.parent}/")
        out.print(fmt_values(cfg["values"]) + f" · cost {cfg['cost']:.3f}")
        out.print(f"files: {', '.join(cfg.get('files', {}).values()) or 'config.json'}")
        if onnx := cfg.get("onnx"):
            out.print(
                f"ONNX Runtime: accuracy {onnx['accuracy']:.4f} (torch program {onnx['deployable_accuracy']:.4f}); "
                f"{onnx['ort_ms']:.4g} ms against torch's {onnx['torch_ms']:.4g} ms side by side: {onnx['faster']} is "
                "faster here"
            )

    _guard(body)


@app.command()
def apply(
    config: Annotated[Path, typer.Argument(help="An exported config.json.")],
    task: Annotated[str | None, typer.Option("--task", help="Task to apply it to (default: the config's).")] = None,
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Write the deployable program (torch.export) there.")
    ] = None,
) -> None:
    """Re-apply an exported config to a task's model and check it matches what was exported: the scored
    model's accuracy, size and MACs, the deployable form's accuracy, and its latency ratio to the
    teacher timed side by side (within a quarter: latency is noisy).

    Exits 1 when a figure is outside its tolerance.

    Example: tradeoff apply best/config.json --task digits --out model.pt2
    """

    def body() -> None:
        try:
            cfg = load_config(config)
        except ExportError as exc:
            raise SpecError(str(exc)) from None
        rebuilt, rows = apply_config(cfg, task_name=task)
        print_checks(str(config), rows)
        if out_file is not None:  # the program that runs where torch.export can save it, else the scored model
            program = rebuilt.compressed.deployable.program
            what = "the deployable program" if program is not None else "the scored model"
            torch.export.save(export_program(program or rebuilt.compressed.scored, rebuilt.example_inputs), out_file)
            out.print(f"wrote {out_file} ({what})")
        bad = [r["figure"] for r in rows if not r["ok"]]
        if bad:
            raise ExportError(f"re-applied model differs from the export in {', '.join(bad)} (beyond tolerance).")

    _guard(body)


@app.command()
def dashboard(
    storage: StorageOpt = None,
    host: Annotated[
        str, typer.Option("--host", help="Interface to bind; 0.0.0.0 shares it on the network.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port.", min=1, max=65535)] = 8050,
) -> None:
    """Serve the studies of a storage in a browser, read-only: fronts, weights, trials, config download.

    Example: tradeoff dashboard --storage sqlite:///tradeoff.db --port 8050
    """

    def body() -> None:
        from tradeoff.search.dashboard import DashboardError, serve

        try:
            serve(resolve_storage_url(storage), host=host, port=port)
        except DashboardError as exc:
            raise SpecError(str(exc)) from None

    _guard(body)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
