"""``gradsight vanish`` — the vanishing-gradient lab (see gradsight.lab)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ..errors import InvalidValueError
from ..present.plots import save_figure
from ._common import (
    MKDIR_HELP,
    check_output_folder,
    command,
    jobs_option,
    markup_safe,
    print_json,
    scheduler_option,
    show_progress,
    wrote,
)


def _parse_ints(text: str, option: str) -> list[int]:
    parts = [p.strip() for p in text.split(",")]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise InvalidValueError(
            f"{option} must be comma-separated positive integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise InvalidValueError(f"{option} must be comma-separated positive integers, "
                                f"got {text!r}")
    return values


def _names(text: str, option: str) -> list[str]:
    names = [p.strip() for p in text.split(",") if p.strip()]
    if not names:
        raise InvalidValueError(f"{option} must list at least one name, got {text!r}")
    return names


def _run_with_progress(quiet: bool, label: str, work: Any) -> Any:
    """Call ``work(progress)``; draw a rich bar on stderr when :func:`show_progress`."""
    if not show_progress(quiet):
        return work(None)
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        return work(update)


def _vanish_table(result: Any) -> Any:
    from rich.table import Table

    data = result.to_dict()
    trained = data["layers"][0]["speed_trained"] is not None
    table = Table(title="speed of learning ‖∂C/∂b‖ per hidden layer (1 = nearest the input)")
    table.add_column("hidden layer", justify="right")
    table.add_column("ours, at init", justify="right")
    if trained:
        table.add_column(f"ours, after {data['config']['train_epochs']} epochs", justify="right")
    table.add_column("Nielsen (MNIST)", justify="right")
    table.add_column("speed_l / speed_l+1", justify="right")

    def fmt(value: Any) -> str:
        return "—" if value is None else f"{value:.4g}"

    for row in data["layers"]:
        cells = [str(row["layer"]), fmt(row["speed_at_init"])]
        if trained:
            cells.append(fmt(row["speed_trained"]))
        table.add_row(*cells, fmt(row["nielsen"]), fmt(row["factor_to_next"]))
    return table


def _print_vanish(result: Any) -> None:
    from rich.console import Console

    data, console = result.to_dict(), Console()
    console.print(_vanish_table(result))
    cfg = data["config"]
    line = (f"last/first: ours {data['ratio_last_first']:.3g}"
            + (f", Nielsen {data['nielsen_ratio_last_first']:.3g}"
               if data["nielsen_ratio_last_first"] else ""))
    if data["ratio_last_first_trained"] is not None:
        line += (f"; after training {data['ratio_last_first_trained']:.3g} "
                 f"(loss {data['loss_trained']:.4g}, accuracy {data['accuracy_trained']:.3f})")
    console.print(line)
    console.print("[dim]" + markup_safe(
        f"{cfg['data']}, {cfg['samples']} samples, {cfg['activation']}, {cfg['init']} "
        f"weights, {cfg['bias_init']} biases, {cfg['loss']} cost, mean of {cfg['seeds']} "
        "seed(s)") + "[/dim]")


def _print_sweep(result: Any) -> None:
    from rich.console import Console

    rows = [[str(row["depth"]), markup_safe(row["activation"]), markup_safe(row["init"]),
             f"{row['ratio_last_first_init']:.3g}", f"{row['ratio_last_first_trained']:.3g}",
             f"{row['loss']:.4g}", f"{row['accuracy']:.3f}", str(row["diverged"])]
            for row in result.rows]
    table, width = _fitting_table(
        "vanishing-gradient sweep (means over seeds; ratio = ‖∂C/∂b‖ last / first hidden "
        "layer)", ["depth", "activation", "init", "ratio at init", "ratio trained", "loss",
                   "accuracy", "diverged seeds"], rows, text_columns={1, 2})
    console = Console()
    console.print(table, width=max(console.width, width), crop=False)


def _fitting_table(title: str, headers: list[str], rows: list[list[str]],
                   text_columns: set[int]) -> tuple[Any, int]:
    """A table whose cells are never cut, and the width it needs.

    rich shrinks a table wider than the terminal by cutting cells (``1.49e+…`` at 80
    columns) and drops the columns that still do not fit. Here every column is as wide as
    its widest cell — a header is broken between its words to fit it (``ratio at`` / ``init``)
    — and columns are two spaces apart, so the sweep of the default names fits 80 columns;
    the caller prints it at least as wide as it needs."""
    import textwrap

    from rich.table import Table

    widths = [max([len(row[i]) for row in rows] + [max(map(len, header.split()))])
              for i, header in enumerate(headers)]
    table = Table(title=title, box=None, padding=(0, 1), pad_edge=False,
                  header_style="bold underline")
    for i, header in enumerate(headers):
        table.add_column("\n".join(textwrap.wrap(header, widths[i])), no_wrap=True,
                         justify="left" if i in text_columns else "right", min_width=widths[i])
    for row in rows:
        table.add_row(*row)
    return table, sum(widths) + 2 * (len(widths) - 1)


def _print_trajectory(result: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="activation mean ± std per hidden layer (probe samples)")
    table.add_column("step", justify="right")
    for name in result.layers:
        table.add_column(name, justify="right")
    stride = max(1, len(result.steps) // 12)
    for t in [*range(0, len(result.steps) - 1, stride), len(result.steps) - 1]:
        table.add_row(str(result.steps[t]), *(f"{m:.3f} ± {d:.3f}" for m, d in zip(
            result.mean[t], result.std[t], strict=True)))
    console = Console()
    console.print(table)
    top = result.top_layer()
    console.print(f"top hidden layer: mean {top['start']:.3f} at step 0 → {top['min']:.3f} "
                  f"at step {top['min_step']} (Glorot & Bengio: driven towards 0 early)")


def _figures(result: Any, mode: str) -> dict[str, Any]:
    from ..present.plots.diagnostics import (  # late: matplotlib, not needed for --help
        plot_activation_trajectory,
        plot_sigmoid_bound,
        plot_speeds_over_training,
        plot_sweep,
        plot_vanish,
    )

    if mode == "sweep":
        return {"sweep": plot_sweep(result)}
    if mode == "glorot":
        return {"activation_trajectory": plot_activation_trajectory(result)}
    figures = {"vanish": plot_vanish(result)}
    speeds = [row["speed_at_init"] for row in result.layers]
    if result.config["activation"] == "sigmoid" and len(speeds) >= 2 and min(speeds) > 0:
        figures["sigmoid_bound"] = plot_sigmoid_bound(result)
    if len(result.speeds_by_epoch) > 1:  # trained: Nielsen's speeds while training
        figures["speeds_by_epoch"] = plot_speeds_over_training(result)
    return figures


def _write_outputs(result: Any, mode: str, plot: str | None, report: str | None) -> list[str]:
    """Write the figures into ``plot`` and/or a report (.html page or .json); the paths."""
    figures = _figures(result, mode) if plot is not None or report is not None else {}
    paths = [str(save_figure(fig, Path(plot) / f"{name}.png"))
             for name, fig in figures.items()] if plot is not None else []
    if report is not None:
        from ..present.report import (  # late: matplotlib, not needed for --help
            build_report,
            write_html,
            write_json,
        )

        title = {"sweep": "Vanishing-gradient sweep", "glorot": "Activations over training "
                 "(Glorot & Bengio)"}.get(mode, "Speed of learning per layer (Nielsen, ch. 5)")
        page = build_report(title, figures=figures, data=result.to_dict())
        writer = write_json if report.lower().endswith(".json") else write_html
        paths.append(str(writer(page, report)))
    return paths


def _parallel_options(mode: str, jobs: int, scheduler: str | None) -> dict[str, Any]:
    """``--jobs``/``--scheduler`` checked (before any training) as the sweep's keywords;
    refused for the other experiments, which run one after the other."""
    if mode != "sweep":
        if jobs != 1 or scheduler is not None:
            raise InvalidValueError("--jobs and --scheduler apply to --sweep only")
        return {}
    from ..diagnostics.parallel import check_parallel  # late: NumPy, not needed for --help

    jobs, scheduler = check_parallel(jobs, scheduler, ("--jobs", "--scheduler"))
    return {"jobs": jobs, "scheduler": scheduler}


def _compute(mode: str, options: dict[str, Any], lists: dict[str, str], quiet: bool) -> Any:
    """Run the experiment of ``mode`` with the options given on the command line (the others
    keep the experiment's defaults)."""
    from ..lab import vanishing as experiments  # late: NumPy, not needed for --help

    if "hidden" in options:
        options["hidden"] = _parse_ints(options["hidden"], "--hidden")
    if mode == "glorot":
        options.pop("samples", None), options.pop("seeds")
        if "train_epochs" in options:
            options["epochs"] = options.pop("train_epochs")
        return experiments.activation_trajectory(**options)
    if mode == "sweep":
        for name in ("hidden", "init", "activation"):
            options.pop(name, None)
        options.update(depths=_parse_ints(lists["depths"], "--depths"),
                       activations=_names(lists["activations"], "--activations"),
                       inits=_names(lists["inits"], "--inits"))
        return _run_with_progress(quiet, "sweep", lambda progress: experiments.sweep(
            **options, progress=progress))
    return _run_with_progress(quiet, "networks", lambda progress: (
        experiments.nielsen_speeds(**options, progress=progress)))


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""

    @command(app, "vanish")
    def vanish(
        data: str = typer.Option("digits", help="data set name or CSV path"),
        hidden: str | None = typer.Option(
            None, help="hidden layer sizes, e.g. 30,30,30,30 (default; --glorot 100,100,100,100)"),
        activation: str = typer.Option("sigmoid", help="hidden activation"),
        init: str | None = typer.Option(
            None, help="weight initialiser: scaled_normal = N(0, 1/n_in) (default; --glorot "
            "glorot_standard = U[−1/√n, 1/√n])"),
        bias_init: str | None = typer.Option(
            None, help="bias initialiser: normal (default) or zeros (--sweep, --glorot)"),
        loss: str | None = typer.Option(
            None, help="cross_entropy (default: Nielsen's sigmoid outputs with binary CE), "
            "softmax (--glorot default), quadratic"),
        samples: int | None = typer.Option(
            None, help="training samples averaged over (default 1000)"),
        seeds: int = typer.Option(3, help="networks averaged per configuration"),
        seed: int = typer.Option(0, help="first seed"),
        train_epochs: int | None = typer.Option(
            None, help="epochs of SGD (default 0; --sweep 6; --glorot 5)"),
        lr: float = typer.Option(0.1, help="the learning rate η of SGD"),
        batch_size: int | None = typer.Option(
            None, help="mini-batch size (default 10; --sweep 16)"),
        run_sweep: bool = typer.Option(False, "--sweep", help="depth × activation × init"),
        depths: str = typer.Option("2,4,6", help="--sweep: numbers of hidden layers"),
        activations: str = typer.Option("sigmoid,tanh,relu,leaky_relu",
                                        help="--sweep: activations"),
        inits: str = typer.Option("scaled_normal,xavier_uniform,he_normal",
                                  help="--sweep: initialisers"),
        glorot: bool = typer.Option(
            False, "--glorot", help="Glorot & Bengio: activation mean and spread per hidden "
            "layer over training"),
        plot: str | None = typer.Option(None, help="write the figures (PNG) into this folder"),
        report: str | None = typer.Option(None, help="write a report: PATH.html or PATH.json"),
        as_json: bool = typer.Option(False, "--json", help="print one JSON document"),
        quiet: bool = typer.Option(False, "--quiet", help="no progress bar"),
        mkdir: bool = typer.Option(False, "--mkdir", help=MKDIR_HELP),
        jobs: int = jobs_option("the networks", only="--sweep: "),
        scheduler: str | None = scheduler_option("the networks", only="--sweep: "),
    ) -> None:
        """Measure how fast each hidden layer learns (Nielsen, ch. 5), sweep depth ×
        activation × initialiser, or follow activations over training (Glorot & Bengio)."""
        if run_sweep and glorot:
            raise InvalidValueError("choose one of --sweep and --glorot")
        if report is not None and Path(report).suffix.lower() not in {".html", ".json"}:
            raise InvalidValueError(f"--report must end in .html or .json, got {report!r}")
        if plot is not None and Path(plot).exists() and not Path(plot).is_dir():
            raise InvalidValueError(f"--plot must be a folder, but {plot!r} is a file")
        check_output_folder(plot, mkdir)  # the folder --plot may be made, its parent must be
        check_output_folder(report, mkdir)
        mode = "sweep" if run_sweep else "glorot" if glorot else "protocol"
        parallel = _parallel_options(mode, jobs, scheduler)
        given = {"hidden": hidden, "init": init, "bias_init": bias_init, "loss": loss,
                 "samples": samples, "train_epochs": train_epochs, "batch_size": batch_size}
        options = {"data": data, "activation": activation, "seed": seed, "lr": lr,
                   "seeds": seeds, **{k: v for k, v in given.items() if v is not None}}
        lists = {"depths": depths, "activations": activations, "inits": inits}
        result = _compute(mode, {**options, **parallel}, lists, quiet)
        paths = _write_outputs(result, mode, plot, report)
        for path in paths:
            wrote(path)
        if as_json:
            print_json({**result.to_dict(), "files": paths})
            return
        {"sweep": _print_sweep, "glorot": _print_trajectory,
         "protocol": _print_vanish}[mode](result)
