"""What the ``tradeoff`` command prints: number formats, the result tables and the search's progress.

The commands in :mod:`tradeoff.search.cli` decide *what* to show; this module decides *how*. Results
go to :data:`out` (stdout, so scripts can pipe them); messages and progress to :data:`err`.
Trial attributes are read through :mod:`tradeoff.studies.record`, their one definition.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, Self

import optuna
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from tradeoff.objectives import EnergyModel
from tradeoff.studies import record
from tradeoff.studies.results import Feasibility, FrontEntry, Violation, objective_names_of

from .events import TrialEvent

out = Console()  # results: stdout, what scripts and pipes read
err = Console(stderr=True)  # progress and messages: stderr, so stdout stays the answer

# ---------------------------------------------------------------------------------- formatting


def fmt_complexity(name: str, value: float) -> str:
    """A complexity figure as its column shows it: size in KiB, any other figure in 3 digits.

    Example:
        >>> fmt_complexity("size_bytes", 2048), fmt_complexity("macs", 123456)
        ('2.0', '1.23e+05')
    """
    return f"{value / 1024:.1f}" if name == "size_bytes" else f"{value:.3g}"


def complexity_header(name: str) -> str:
    """The column header of a complexity figure (``KiB`` for the size, else its name).

    Example:
        >>> complexity_header("size_bytes"), complexity_header("bops")
        ('KiB', 'bops')
    """
    return "KiB" if name == "size_bytes" else name


def fmt_values(values: dict[str, float]) -> str:
    """A trial's four objectives on one line (the second is the complexity figure).

    Example:
        >>> fmt_values({"accuracy": 0.98, "size_bytes": 4096, "latency_ms": 0.25, "energy_mj": 0.0042})
        'acc 0.9800 · 4.0 KiB · 0.250 ms · 0.0042 mJ'
    """
    name = list(values)[1]  # the complexity objective
    return (
        f"acc {values['accuracy']:.4f} · {fmt_complexity(name, values[name])} {complexity_header(name)} · "
        f"{values['latency_ms']:.3f} ms · {values['energy_mj']:.3g} mJ"
    )


CONSTRAINT_LABELS = {  # how a limit is named in prose ("accuracy drop <= 1.00 pt")
    "max_accuracy_drop": "accuracy drop",
    "max_latency_ms": "latency",
    "max_size_bytes": "size",
    "max_energy_mj": "energy",
}
MISS_HEADERS = {  # column headers of by how much each limit is missed, in the unit of the column
    "max_accuracy_drop": "drop+ pt",
    "max_latency_ms": "+ms",
    "max_size_bytes": "+B",
    "max_energy_mj": "+mJ",
}
SMALL_BYTES = 10 * 1024  # below this a size limit reads better in bytes than in KiB


def fmt_constraint(name: str, value: float) -> str:
    """A limit, or by how much it is missed, in the constraint's unit (accuracy drop in points).

    Example:
        >>> fmt_constraint("max_accuracy_drop", 0.01), fmt_constraint("max_size_bytes", 500)
        ('1.00 pt', '500 B')
    """
    if name == "max_accuracy_drop":
        return f"{value * 100:.2f} pt"
    if name == "max_latency_ms":
        return f"{value:.3f} ms"
    if name == "max_size_bytes":
        return f"{value:,.0f} B" if abs(value) < SMALL_BYTES else f"{value / 1024:.1f} KiB"
    if name == "max_energy_mj":
        return f"{value:.3g} mJ"
    return f"{value:.4g}"


def fmt_limits(limits: dict[str, float]) -> str:
    """The spec's limits in prose.

    Example:
        >>> fmt_limits({"max_accuracy_drop": 0.01, "max_latency_ms": 0.5})
        'accuracy drop <= 1.00 pt, latency <= 0.500 ms'
    """
    return ", ".join(f"{CONSTRAINT_LABELS.get(k, k)} <= {fmt_constraint(k, v)}" for k, v in limits.items())


def fmt_miss(name: str, value: float) -> str:
    """By how much a constraint is missed, in the unit its column header names; ``ok`` when met.

    Example:
        >>> fmt_miss("max_accuracy_drop", 0.072), fmt_miss("max_latency_ms", -0.1)
        ('7.20', 'ok')
    """
    if value <= 0:
        return "ok"
    if name == "max_accuracy_drop":
        return f"{value * 100:.2f}"
    if name == "max_latency_ms":
        return f"{value:.3f}"
    if name == "max_size_bytes":
        return f"{value:,.0f}"
    return f"{value:.3g}"


def energy_note(entries: list[FrontEntry]) -> str:
    """How the energy of the shown trials was obtained: by a hardware counter, or by which energy model.

    The model's label is read from the trials' stored provenance (its ``energy_model`` detail);
    trials that lack it are labelled with today's :class:`~tradeoff.objectives.EnergyModel`.

    Example:
        >>> energy_note([]) == "estimated by " + EnergyModel().label
        True
    """
    provenances = [record.provenance_of(e.trial, "energy_mj") for e in entries]
    if {p.get("source") for p in provenances} == {"measured"}:
        return "measured (hardware counter)"
    labels = sorted({p["energy_model"] for p in provenances if p.get("energy_model")}) or [EnergyModel().label]
    return "estimated by " + ", ".join(labels)


# ---------------------------------------------------------------------------------- tables


def _table(title: str, caption: str, *columns: str, **style: Any) -> Table:
    """A right-aligned, unwrapped results table with a simple head."""
    table = Table(title=title, caption=caption, box=box.SIMPLE_HEAD, pad_edge=False, **style)
    for col in columns:
        table.add_column(col, justify="right", no_wrap=True)
    return table


def print_front(study: optuna.Study, entries: list[FrontEntry], knee: int) -> None:
    """The feasible front ranked by cost, its hypervolume and how each objective was obtained."""
    complexity = objective_names_of(study)[1]
    table = _table(
        f"Pareto front of {study.study_name}: {len(entries)} feasible trials, lowest cost first",
        "* knee point · b baseline · ! deployable form's accuracy more than half a point from the scored model's "
        "· prune = channel ratio removed · wb/ab = weight/activation bits · tuned = "
        "fine-tuning regime (near/far from the teacher)",
        *(
            "trial",
            "prune",
            "wb",
            "ab",
            "T",
            "alpha",
            "tuned",
            "accuracy",
            complexity_header(complexity),
            "ms",
            "mJ",
            "cost",
        ),
        collapse_padding=True,
    )
    for e in entries:
        r = record.recipe_of(e.trial)
        p, q, d = r.get("pruning", {}), r.get("quantization", {}), r.get("distillation", {})
        distils = d.get("steps", 0) > 0
        marks = ("*" if e.trial.number == knee else "") + ("b" if record.is_baseline(e.trial) else "")
        marks += "!" if record.gap_flagged(e.trial) else ""
        table.add_row(
            f"{e.trial.number}{marks}",
            f"{p.get('ratio', 0):.2f}",
            str(q.get("weight_bits", 32)),
            str(q.get("activation_bits", 32)),
            f"{d['temperature']:.1f}" if distils else "-",
            f"{d['alpha']:.2f}" if distils else "-",
            record.how_tuned(e.trial),
            f"{e.values['accuracy']:.4f}",
            fmt_complexity(complexity, e.values[complexity]),
            f"{e.values['latency_ms']:.3f}",
            f"{e.values['energy_mj']:.3g}",
            f"{e.cost:.3f}",
        )
    out.print(table)


def print_front_notes(hypervolume: float, entries: list[FrontEntry]) -> None:
    """The lines under the front table: its hypervolume, how each objective was obtained, and why a
    trial's fine-tuning was undone or its accuracy fell (``finetune.why_kept``, ``finetune.explanation``)."""
    for e in entries:
        if record.gap_flagged(e.trial):
            f = record.attrs(e.trial).get(record.FIGURES, {})
            out.print(
                f"#{e.trial.number}: accuracy {f['deployable_accuracy']:.4f} on the deployable form (the front's), "
                f"{f['scored_accuracy']:.4f} on the scored model",
                style="yellow",
                highlight=False,
            )
        ft = record.finetune_of(e.trial)
        for key in ("why_kept", "explanation"):
            if ft.get(key):
                out.print(f"#{e.trial.number}: {ft[key]}", style="dim", highlight=False)
    out.print(f"hypervolume {hypervolume:.4f} in the baseline-normalised space")
    out.print(
        "accuracy measured on the validation samples not kept apart for selection ([search] select_on), on the "
        "deployable form where the recipe quantizes; complexity computed at the chosen bit-widths; latency measured "
        "on the deployable form (see deployable_form), interleaved with the baseline; energy " + energy_note(entries),
        style="dim",
    )


def print_least_violating(study: optuna.Study, feas: Feasibility, least: list[Violation]) -> None:
    """Say that no trial meets the constraints, then list the trials that come closest."""
    out.print(
        f"study {study.study_name}: [bold]no trial meets the constraints[/] ({fmt_limits(feas.limits)}); "
        f"all {feas.candidates} completed candidates miss at least one, and so does the baseline. To get a "
        "feasible front, loosen \\[constraints] in the spec or run more trials (tradeoff launch SPEC --trials N).",
        highlight=False,
    )
    complexity = objective_names_of(study)[1]
    names = list(feas.limits) or sorted({k for v in least for k in v.constraints})
    table = _table(
        f"the {len(least)} least-violating trials of {study.study_name}, closest to the constraints first",
        "bits = weight/activation · drop+ pt, +ms, +B, +mJ: by how much a limit is missed (ok = met) · "
        "viol = the misses summed, each relative to the baseline accuracy (accuracy drop) or to its limit",
        *("trial", "prune", "bits", "acc", complexity_header(complexity), "ms", "mJ"),
        *(MISS_HEADERS.get(n, f"{n}+") for n in names),
        *("viol", "cost"),
        padding=(0, 0),
    )
    for v in least:
        r = record.recipe_of(v.trial)
        p, q = r.get("pruning", {}), r.get("quantization", {})
        table.add_row(
            str(v.trial.number),
            f"{p.get('ratio', 0):.2f}",
            f"{q.get('weight_bits', 32)}/{q.get('activation_bits', 32)}",
            f"{v.values['accuracy']:.4f}",
            fmt_complexity(complexity, v.values[complexity]),
            f"{v.values['latency_ms']:.3f}",
            f"{v.values['energy_mj']:.3g}",
            *("-" if n not in v.constraints else fmt_miss(n, v.constraints[n]) for n in names),
            f"{v.violation:.3f}",
            f"{v.cost:.3f}",
        )
    out.print(table)


def print_studies(url: str, rows: list[dict[str, Any]]) -> None:
    """The ``ls`` table: one row per study with its progress (``rows`` as ``ls --json`` prints them)."""
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


def print_summary(data: dict[str, Any]) -> None:
    """The ``show`` summary (``data`` as ``show --json`` prints it); the front's best when there is one."""
    counts, sampler, chosen = data["trials"], data["sampler"], data["sampler_chosen"]
    if chosen and chosen["name"] != sampler:
        sampler = f"{sampler} -> {chosen['name']} ({chosen['reason']})"
    out.print(f"[bold]{data['study']}[/] · task {data['task']} · sampler {sampler} · seed {data['seed']}")
    if data.get("int8_backend"):
        chosen_backend = data["int8_backend"]
        out.print(f"int8 programs built by {chosen_backend['backend']}: {chosen_backend['reason']}", highlight=False)
    out.print(
        f"trials: {counts['complete']} complete ({counts['screened']} screened before fine-tuning, "
        f"{counts['duplicate']} reusing a duplicate), {counts['stopped']} stopped at a rung, "
        f"{counts['fail']} failed, {counts['running']} running of a budget of {data['budget']}"
    )
    if data["failures"]:
        out.print("failed by reason: " + ", ".join(f"{reason} {n}" for reason, n in data["failures"].items()))
    if data["hosts"]:
        out.print(
            "hosts: " + ", ".join(f"{host} ({h['trials']} trials)" for host, h in data["hosts"].items()),
            highlight=False,
        )
    out.print(f"objectives: {', '.join(data['objectives'])} · weights {data['weights']}")
    if data["constraints"]:
        out.print(f"constraints: {data['constraints']}")
    if data["accuracy_gaps"]:
        listed = ", ".join(f"#{g['trial']} ({100 * g['gap']:+.1f} pt)" for g in data["accuracy_gaps"])
        out.print(
            f"[yellow]accuracy of the deployable form differs from the scored model's by more than "
            f"{100 * record.ACCURACY_GAP_FLAG:.1f} point[/]: {listed}",
            highlight=False,
        )
    if data["least_violating"]:
        return  # the caller lists the least-violating trials instead of a front
    hv = data["hypervolume"]
    out.print(
        f"front: {data['front_size']} feasible trials · hypervolume {hv:.4f}" if hv is not None else "front: none yet"
    )
    for label, key in (("lowest cost", "best_cost"), ("knee", "knee")):
        if data[key]:
            e = data[key]
            out.print(f"{label}: trial {e['trial']} · {fmt_values(e['values'])} · cost {e['cost']:.3f}")


def print_checks(config: str, rows: list[dict[str, Any]]) -> None:
    """The ``apply`` table: each figure as exported and as re-applied, with its tolerance."""
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


# ---------------------------------------------------------------------------------- progress


def trial_line(ev: TrialEvent) -> str:
    """What one finished trial adds to the progress display: the front so far and the trial's outcome.

    Example:
        >>> trial_line(TrialEvent(3, "STOPPED", None, done=4, total=10, front_size=2, hypervolume=0.125))
        'front 2 · hv 0.1250 · #3: stopped at a fidelity rung (dominated there)'
    """
    if ev.state == "STOPPED":
        last = "stopped at a fidelity rung (dominated there)"
    elif ev.state == "LOST":
        last = f"lost ({ev.error})"
    elif ev.values is None:
        last = f"FAILED ({ev.error})" if ev.error else f"{ev.state.lower()} of trial {ev.duplicate_of}"
    else:
        last = fmt_values(ev.values)
        if ev.state == "SCREENED":
            last += " · screened: a size/latency/energy limit fails before fine-tuning"
        elif ev.state == "DUPLICATE":
            last += f" · same recipe as trial {ev.duplicate_of}: result reused"
    hv = f"{ev.hypervolume:.4f}" if ev.hypervolume is not None else "-"
    return f"front {ev.front_size} · hv {hv} · #{ev.number}: {last}"


class TrialProgress:
    """The search's progress on :data:`err`: a live bar on a terminal, one plain line per trial in
    logs and pipes. Use as a context manager and hand :meth:`on_event` to the runner.

    Args:
        total: Trials in the study, baseline included.
        console: Where to draw (stderr by default).

    Example:
        >>> import io
        >>> with TrialProgress(2, Console(file=io.StringIO())) as progress:
        ...     progress.on_event(TrialEvent(1, "FAIL", None, done=1, total=2, front_size=0, error="boom"))
    """

    def __init__(self, total: int, console: Console = err) -> None:
        self.total = total
        self.console = console
        self.live = console.is_terminal  # a live bar on a terminal; one plain line per trial otherwise
        self.progress = Progress(
            TextColumn("[bold]trials"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.description}"),
            console=console,
            disable=not self.live,
        )
        self._bar: Any = None

    def __enter__(self) -> Self:
        self.progress.__enter__()
        self._bar = self.progress.add_task("building the task (teacher, cached outputs)", total=self.total)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.progress.__exit__(kind, exc, tb)

    def on_event(self, ev: TrialEvent) -> None:
        """Show one finished trial: update the bar, and print its line when there is no live bar."""
        line = trial_line(ev)
        self.progress.update(self._bar, completed=ev.done, description=line)
        if not self.live:
            self.console.print(
                f"trial {ev.number} {ev.state.lower()} ({ev.done}/{ev.total}) · {line}", highlight=False, soft_wrap=True
            )
