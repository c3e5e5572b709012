"""The `audit` command line: parse, call the API, map errors to exit codes.

Exit codes: 0 ok, 1 a quality gate failed, 2 bad input or usage, 3 internal error.
Heavy imports (torch, torchattacks) happen inside the commands, so `audit --help` and `--version` are fast.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

try:  # newer typer releases vendor click (a separately installed click is then not the one typer raises)
    from typer._click.exceptions import UsageError
except ImportError:  # older ones build on the click package
    from click.exceptions import UsageError

from attacks.registry import DEFAULT_ATTACK
from audit.version import __version__
from audit.errors import EXIT_INTERNAL, EXIT_USAGE, AuditError, GateFailed

COMMANDS = {"run", "series", "attacks", "demo", "layers", "report", "compare", "config", "hierarchy"}

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Audit the adversarial robustness of a PyTorch image classifier.\n\n"
    "Usage: audit MODEL --data PATH [options]  (the `run` command is the default), "
    "audit series MODEL..., audit attacks, audit demo, audit layers MODEL, audit hierarchy LABELSET.\n\nExit codes: 0 ok, 1 a quality gate failed, 2 bad input or usage, "
    "3 internal error.",
)


def _version(value: bool):
    if value:
        typer.echo(f"robustness-audit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
):
    pass


class PlainProgress:
    """Progress as plain lines on stderr, for logs and pipes (stdout is not a terminal)."""

    def __init__(self, prefix: str = ""):
        self.prefix, self.total, self.done, self.next_report = prefix, 0, 0, 0.0

    def stage(self, text: str) -> None:
        print(f"{self.prefix}{text}", file=sys.stderr, flush=True)

    def start(self, total: int) -> None:
        self.total, self.done, self.next_report = total, 0, 0.1

    def advance(self, n: int) -> None:
        self.done += n
        if self.total and self.done / self.total >= self.next_report - 1e-9:
            print(f"{self.prefix}{self.done}/{self.total} samples", file=sys.stderr, flush=True)
            self.next_report = self.done / self.total + 0.1


class RichProgress:
    """A progress bar on a terminal."""

    def __init__(self, bar, label: str = "audit"):
        self.bar, self.label, self.task = bar, label, None

    def stage(self, text: str) -> None:
        if self.task is None:
            self.task = self.bar.add_task(f"{self.label}: {text}", total=None)
        else:
            self.bar.update(self.task, description=f"{self.label}: {text}")

    def start(self, total: int) -> None:
        self.bar.update(self.task, total=total, completed=0)

    def advance(self, n: int) -> None:
        self.bar.advance(self.task, n)


def _progress_context(label: str):
    """A context manager yielding a progress reporter suited to where stdout goes."""
    from contextlib import contextmanager

    @contextmanager
    def ctx():
        if sys.stdout.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                          TimeElapsedColumn(), transient=True) as bar:
                yield RichProgress(bar, label)
        else:
            yield PlainProgress(f"[{label}] ")

    return ctx()


def _console():
    from rich.console import Console

    return Console(highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 120)


@app.command("run", help="Audit MODEL (the default command: `audit MODEL ...` means `audit run MODEL ...`).")
def run(
    ctx: typer.Context,
    model: str | None = typer.Argument(None, metavar="MODEL", show_default=False,
                                       help="Model file: safetensors, state_dict .pt, TorchScript, torch.export .pt2, "
                                       "or a full pickle (only with --trust-model); a Hugging Face save_pretrained "
                                       "folder; or `model` in --config."),
    config: Path | None = typer.Option(None, "--config", help="TOML file with any of these options (keys as the "
                                       "flags, '_' for '-'; see `audit config --example`); flags given here win."),
    data: str = typer.Option("demo", help="ImageFolder dir, CIFAR batches, IDX file/dir, .npz, or 'demo'."),
    arch: str | None = typer.Option(None, help="Network for weight files: package.module:callable, file.py:callable, "
                                    "or timm:NAME (a timm model, built with pretrained=False)."),
    arch_kwargs: str | None = typer.Option(None, help='JSON keyword arguments for --arch, e.g. \'{"num_classes": 10}\'.'),
    weights_meta: str | None = typer.Option(None, help="With a torchvision --arch: the weights enum member "
                                            "(IMAGENET1K_V2, DEFAULT or ResNet50_Weights.IMAGENET1K_V2) whose "
                                            "transforms and categories give the preprocessing and class names; "
                                            "nothing is downloaded, the weights come from MODEL."),
    trust_model: bool = typer.Option(False, "--trust-model", help="Allow full pickled models (runs code from the file)."),
    classes: str | None = typer.Option(None, help="Class names: imagenet-1k, cifar10, cifar100, fashion-mnist, "
                                          "mnist, a file with one name per line, or a comma list."),
    input_size: str | None = typer.Option(None, help="Model input size: one int or HxW (default: the model's declared "
                                          "size; else the crop; else the data's when all images share one size)."),
    resize: int | None = typer.Option(None, help="Resize each image's short side to N pixels (antialiased) "
                                      "before --crop, e.g. --resize 256 --crop 224 for photos."),
    crop: str | None = typer.Option(None, help="Centre crop after --resize: one int or HxW."),
    interpolation: str | None = typer.Option(None, help="Resampling of every resize: bilinear, bicubic or nearest "
                                             "(default: the model's declared one, else bilinear)."),
    channels: int | None = typer.Option(None, help="Input channels, 1 or 3 (default: the model's first layer)."),
    mean: str | None = typer.Option(None, help="Normalization mean, comma list or one value (applied inside the model)."),
    std: str | None = typer.Option(None, help="Normalization std, comma list or one value."),
    output_key: str | None = typer.Option(None, help="Key or index of the logits in a dict/tuple output."),
    attack: list[str] = typer.Option([DEFAULT_ATTACK], "--attack", "-a",
                                     help="Attack name; repeat for several (see `audit attacks`)."),
    eps: list[str] | None = typer.Option(None, "--eps", help="Budgets in [0,1] pixel space: 8/255 or 0.3 or 2/255,4/255,8/255."),
    steps: int | None = typer.Option(None, help="Iterations (queries for square); default: each attack's default "
                                  "budget (see `audit attacks`; below the reference for cw and autoattack)."),
    targeted: str | None = typer.Option(None, help="Targeted attack: random, least-likely, semantic-near or "
                                         "semantic-far (the class nearest to / farthest from the true one in word space)."),
    target_space: str = typer.Option("glove", help="Where semantic-near/-far find their targets: glove (word vectors) "
                                     "or wordnet (smallest / largest LCA height in the class tree)."),
    samples: str = typer.Option("500", help="Number of images drawn stratified per class, or 'all'."),
    seed: int = typer.Option(0, help="Seed for sampling, targets and attacks."),
    batch_size: int = typer.Option(64, help="Images per batch."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    threads: int | None = typer.Option(None, help="CPU threads for torch (default: torch's choice)."),
    out: Path = typer.Option(Path("audit-out"), help="Output directory for report.json."),
    layers: str = typer.Option("auto", help="Layers of the per-layer analyses: auto, none, or module names "
                               "name1,name2 (see `audit layers MODEL`)."),
    embeddings: str | None = typer.Option(None, help="Word vectors: a word2vec/GloVe/fastText/.kv file, "
                                          "glove-6b-50d (full vocabulary, optional package); default: the shipped "
                                          "GloVe 6B 50d subset."),
    class_words: str | None = typer.Option(None, help="File mapping class names to words (class<TAB>words, or JSON)."),
    class_synsets: str | None = typer.Option(None, "--class-synsets", help="File mapping your class names to WordNet "
                                             "synsets (class<TAB>synset name like dog.n.01 or wnid), read with "
                                             "--wordnet; unmapped classes are named and left out."),
    wordnet: str | None = typer.Option(None, "--wordnet", help="A WordNet 3.0 dict folder (e.g. /usr/share/wordnet) "
                                       "for --class-synsets."),
    superclass_depth: int | None = typer.Option(None, "--superclass-depth", help="Superclasses at this depth of "
                                                "the class tree (root 0); default: the shallowest depth where no "
                                                "superclass holds more than two thirds of the classes."),
    superclasses: str | None = typer.Option(None, "--superclasses", help="Superclasses as WordNet nodes "
                                            "NODE,NODE,... (synset names like vehicle.n.01, or wnids): each class "
                                            "goes to the deepest named node above it, classes under none to "
                                            "'other'."),
    semantic_space: str | None = typer.Option(None, "--semantic-space", help="The semantic window's spaces: glove "
                                              "(word vectors), wordnet (Wu-Palmer on WordNet) or both; default: "
                                              "both when the classes map to WordNet, else glove."),
    permutations: int = typer.Option(1000, help="Label permutations for the semantic significance test."),
    saliency: str = typer.Option("gradcam", help="Saliency maps per layer: gradcam, gradxact, activation, or none."),
    saliency_class: str = typer.Option("predicted", help="The class whose logit the maps explain: predicted or true."),
    entropy: str = typer.Option("glcm", help="Spatial entropy of the maps: glcm, histogram or 2d."),
    levels: int | None = typer.Option(None, help="Quantisation levels L (default: from the smallest measured map)."),
    export_representations: bool = typer.Option(False, "--export-representations",
                                                help="Write OUT/representations.npz (class representations and "
                                                "similarity matrices per layer, word similarity)."),
    gate: list[str] | None = typer.Option(None, "--gate", help="Quality gate METRIC OP NUMBER, repeatable, e.g. "
                                          "'robust_accuracy[pgd@8/255]>=0.40' or 'clean.accuracy>=0.9' (exit 1 when "
                                          "one fails)."),
    fail_under: float | None = typer.Option(None, help="Exit 1 when the robustness score (0-100) is below this."),
    confidence: float = typer.Option(0.95, help="Confidence level of every interval in the report (default 0.95)."),
    weights: str | None = typer.Option(None, help="Score weights, e.g. robustness=0.6,severity=0.15,"
                                       "representation=0.15,saliency=0.1."),
    checks: bool = typer.Option(True, "--checks/--no-checks", help="Run the model-based validity checks."),
    junit: Path | None = typer.Option(None, help="Also write JUnit XML (one test case per gate and per check)."),
    html: bool = typer.Option(True, "--html/--no-html", help="Write OUT/report.html beside report.json (with "
                              "`audit series`, each checkpoint's and OUT/series.html)."),
    resume: bool = typer.Option(False, "--resume", help="continue an interrupted audit from OUT/.state/"),
):
    from audit.config import AuditConfig
    from audit.config_file import read_config_file

    values = read_config_file(config) if config is not None else {}
    values.update(_given_flags(ctx, exclude={"config"}))
    settings = AuditConfig.from_options(values)
    settings.check()
    _audit_and_report(settings, Path(settings.out), export=settings.export_representations, html=settings.html,
                      junit=None if settings.junit is None else Path(settings.junit))


def _run_options(*, drop: set[str], first: list, last: list):
    """Give a command every option of `audit run` (their declarations read from :func:`run`'s signature, so a new
    option of `audit run` is an option of the command too), minus ``drop``, with the command's own parameters
    ``first`` (after ``ctx``) and ``last``: (name, annotation, typer declaration) each. The command takes them
    as keyword arguments."""
    import inspect

    def decorate(func):
        shared = inspect.signature(run, eval_str=True).parameters
        params = [shared["ctx"]]
        params += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=kind)
                   for name, kind, default in first]
        params += [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for name, p in shared.items()
                   if name != "ctx" and name not in drop]
        params += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=kind)
                   for name, kind, default in last]
        func.__signature__ = inspect.Signature(params)
        func.__annotations__ = {p.name: p.annotation for p in params}
        return func

    return decorate


SERIES_OWN = {"models", "order", "select", "gate_on", "alpha", "out", "resume"}


@app.command("series", help="Audit each checkpoint MODEL... (files, a folder, or a glob such as "
             "'ckpt/epoch_*.safetensors'; ordered by the number in the name unless --order given) on the same "
             "samples, seed and settings, with every option of `audit run`: OUT/<name>/ per checkpoint, then "
             "OUT/series.json with the trend, the paired tests between consecutive checkpoints and the selection. "
             "Gates apply to the last checkpoint (or the selected one: --gate-on selected).")
@_run_options(drop={"model", "out", "resume"}, first=[
    ("models", list[str] | None, typer.Argument(None, metavar="MODEL", show_default=False,
                                                 help="Checkpoints: model files, folders of them, or globs.")),
], last=[
    ("out", Path, typer.Option(Path("series-out"), help="Output folder: OUT/<name>/ per checkpoint, "
                               "OUT/series.json and its page OUT/series.html (not with --no-html).")),
    ("order", str, typer.Option("number", help="number: by the numbers in the names (epoch_2 before epoch_10); "
                                "given: as the arguments list them.")),
    ("select", str | None, typer.Option(None, "--select", help="Name the best checkpoint by a gate metric, e.g. "
                                        "'robust_accuracy[pgd@0.1].lower' (higher or lower is better as the "
                                        "metric's family; ties go to the later checkpoint).")),
    ("gate_on", str, typer.Option("last", "--gate-on", help="The checkpoint whose verdict (--gate, --fail-under) "
                                  "sets the exit code: last or selected (needs --select).")),
    ("alpha", float, typer.Option(0.05, help="One-sided significance level of a change between consecutive "
                                  "checkpoints (McNemar, Holm across the pair's accuracy rows).")),
    ("resume", bool, typer.Option(False, "--resume", help="Continue an interrupted series in OUT: reports it "
                                  "finished (same settings, checkpoint and samples) are kept, the checkpoint it "
                                  "was on continues from OUT/<name>/.state/, the rest run.")),
])
def series(ctx: typer.Context, **values):
    from audit.config import AuditConfig
    from audit.config_file import read_config_file
    from audit.engine.series import find_checkpoints
    from audit.stats import check_level

    try:
        check_level(values["alpha"], "--alpha")
    except ValueError as exc:
        raise AuditError(str(exc)) from None
    options = read_config_file(values["config"]) if values["config"] is not None else {}
    options.update(_given_flags(ctx, exclude={"config"} | SERIES_OWN))
    models = values["models"] or ([options["model"]] if options.get("model") else [])
    points = find_checkpoints(models, values["order"])
    options["model"] = str(points[0].path)
    template = AuditConfig.from_options(options)
    _series_and_report(template, points, Path(values["out"]), order=values["order"], select=values["select"],
                       gate_on=values["gate_on"], alpha=values["alpha"],
                       resume=bool(values["resume"] or options.get("resume")))


def _series_and_report(template, points, out: Path, *, order: str = "number", select: str | None = None,
                       gate_on: str = "last", alpha: float = 0.05, resume: bool = False) -> dict | None:
    """Run the series of ``points`` with the settings of ``template`` into ``out``: a line per checkpoint, the trend
    table and the closing lines; exit 1 when the gated checkpoint's verdict fails (`audit series`, `audit demo
    --series`). Another rank of a torchrun works quietly (rank 0 reports) and returns None."""
    from audit.engine.distributed import world
    from audit.engine.series import run_series
    from reports.series import closing_lines, progress_line, trend_table

    _check_out_dir(out)
    settings = dict(order=order, select=select, gate_on=gate_on, alpha=alpha, resume=resume)
    if world(template.device).rank:
        run_series(template, points, out, **settings)
        return None
    console = _console()

    def done(index, total, audited):
        line = progress_line(index, total, audited.checkpoint.name, audited.report, audited.seconds)
        how = {"kept": " [kept: audited before the interruption]", "resumed": " [resumed from its saved state]"}
        console.print(line + how.get(audited.how, ""), markup=False, highlight=False, soft_wrap=True)

    result, _ = run_series(template, points, out, **settings, progress=_progress_context, done=done)
    console.print(trend_table(result))
    for line in closing_lines(result):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    console.print(f"series: {out / 'series.json'}", markup=False, highlight=False)
    if template.html:
        console.print(f"page: {out / 'series.html'}", markup=False, highlight=False)
    if result["gates"]["gated"] and not result["gates"]["passed"]:
        raise GateFailed(f"{result['gates']['checkpoint']} ({result['gates']['on']} checkpoint): "
                         f"{result['gates']['summary']}")
    return result


def _given_flags(ctx, exclude: set[str]) -> dict:
    """The parameters the user gave on the command line (not their defaults), by name."""
    given = {}
    for name, value in ctx.params.items():
        source = ctx.get_parameter_source(name)
        if name not in exclude and source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP"):
            given[name] = value
    return given


def _audit_and_report(config, out: Path, label: str = "audit", export: bool = False, html: bool = True,
                      junit: Path | None = None):
    from audit.outputs import verdict_failures, write_outputs
    from audit.engine.runner import run_audit
    from reports.terminal import render_summary

    from audit.engine.distributed import world

    _check_out_dir(out)
    if world(config.device).rank:  # another rank of a torchrun: work quietly, rank 0 reports
        run_audit(config, state_dir=str(out / ".state"))
        return None
    with _progress_context(label) as progress:
        result = run_audit(config, progress=progress, state_dir=str(out / ".state"))
    path = write_outputs(result, out, export=export, html=html, junit=junit)
    render_summary(result, _console(), str(path))
    failures = verdict_failures(result.verdict)
    if failures:
        raise GateFailed(failures)
    return result


def _check_out_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise AuditError(f"--out {out} exists and is not a directory")
    probe_dir = out if out.exists() else next((p for p in out.absolute().parents if p.exists()), Path("/"))
    if not os.access(probe_dir, os.W_OK):
        raise AuditError(f"--out {out}: cannot write there (permission denied)")


@app.command("config", help="Config files for `audit run --config FILE`: --example prints a commented example.")
def config_cmd(
    example: bool = typer.Option(False, "--example", help="Print an example config file that sets every option to "
                                 "its default (options without a default are commented out)."),
):
    if not example:
        raise AuditError("nothing to do: `audit config --example` prints an example config file")
    from audit.config_file import example_toml

    typer.echo(example_toml(), nl=False)


@app.command("attacks", help="List the available attacks with their defaults and threat models.")
def attacks_cmd():
    from rich.table import Table

    from attacks.registry import REGISTRY

    table = Table(header_style="bold")
    for col in ("name", "attack", "norm", "default eps", "default budget", "reference budget", "targeted",
                "threat model"):
        table.add_column(col)
    for spec in REGISTRY.values():
        unit = spec.steps_unit or "step"
        table.add_row(
            f"{spec.name}\n(default)" if spec.name == DEFAULT_ATTACK else spec.name, spec.title, spec.norm, "—" if spec.default_eps is None else f"{spec.default_eps:.4g}",
            f"{spec.default_steps} {unit}" if spec.default_steps else "1 step",
            f"{spec.reference_steps} {unit}" if spec.reference_steps else "—",
            "yes" if spec.targeted else "no", spec.threat_model,
        )
    _console().print(table)


@app.command("layers", help="List MODEL's layers with their output shapes, how each is pooled, and mark (and "
                              "explain) the ones --layers picks; for a vision transformer also its token layout.")
def layers_cmd(
    model: str = typer.Argument(..., metavar="MODEL", help="Model file, as for `audit run`."),
    arch: str | None = typer.Option(None, help="Network for weight files: package.module:callable, file.py:callable "
                                    "or timm:NAME."),
    arch_kwargs: str | None = typer.Option(None, help='JSON keyword arguments for --arch.'),
    trust_model: bool = typer.Option(False, "--trust-model", help="Allow full pickled models (runs code from the file)."),
    input_size: str | None = typer.Option(None, help="Input size: one int or HxW (default: 224 for 3 channels, else 28)."),
    channels: int | None = typer.Option(None, help="Input channels (default: the model's first layer, else 3)."),
    layers: str = typer.Option("auto", help="auto, none, or module names separated by commas."),
):
    from rich.markup import escape
    from rich.table import Table

    from audit.analyses.layers import auto_choice, candidate_layers, example_batch, resolve_layers, token_layout
    from audit.analyses.tap import pooling_rule
    from audit.model import AuditedModel, load_model
    from audit.options import parse_arch_kwargs, parse_input_size, parse_layers

    choice = parse_layers(layers)
    loaded = load_model(model, arch=arch, arch_kwargs=parse_arch_kwargs(arch_kwargs), trust_model=trust_model)
    audited = AuditedModel(loaded.module, None, None)
    x = example_batch(audited, channels, parse_input_size(input_size))
    candidates = candidate_layers(audited, x)
    chosen = {info.name for info in resolve_layers(audited, choice, x, candidates)}
    why = auto_choice(audited, x, candidates)[1] if choice.auto else {}
    layout = token_layout(audited, x, candidates)
    table = Table(header_style="bold")
    for col in ("layer", "type", "output shape", "runs", "pooled as", f"--layers {escape(layers)}"):
        table.add_column(col)
    for info in candidates:
        pooled = pooling_rule(info.shape, layout) if info.batch_ok else ""
        table.add_row(escape(info.name), escape(info.kind), "x".join(map(str, info.shape)) or "scalar",
                      str(info.calls), pooled, "✓" if info.name in chosen else "")
    console = _console()
    console.print(table)
    shape = "x".join(map(str, x.shape[1:]))
    console.print(f"input {shape}; --layers {escape(layers)} picks {len(chosen)} layer(s)")
    for info in candidates:
        if info.name in why:
            console.print(f"  {escape(info.name)}: {escape(why[info.name])}")
    if layout is not None:
        h, w = layout.grid
        console.print(f"tokens: {layout.prefix} prefix token(s) then {h}x{w} patch tokens (the patch embedding's "
                      f"grid); token layers are pooled by the {layout.pooling} ({escape(layout.why)}); their "
                      f"saliency maps come from the patch tokens on the {h}x{w} grid")


@app.command("demo", help="Audit the shipped Fashion-MNIST CNN and its adversarially trained twin, offline.")
def demo_cmd(
    ctx: typer.Context,
    out: Path = typer.Option(Path("demo-out"), help="Output directory (one report per model)."),
    attack: list[str] = typer.Option(["fgsm", "pgd", "apgd"], "--attack", "-a", help="Attacks to run."),
    eps: str = typer.Option("0.05,0.1,0.2,0.3", help="Budgets (Linf, [0,1] pixels)."),
    steps: int | None = typer.Option(None, help="Iterations (default: each attack's default budget, see `audit attacks`: "
                                   "the reference one for fgsm, pgd and apgd; below it, and labelled non-standard, "
                                   "for cw and autoattack)."),
    samples: str = typer.Option("all", help="Images of the 300 shipped ones, or 'all'."),
    seed: int = typer.Option(0, help="Seed."),
    device: str = typer.Option("cpu", help="cpu (the README's figures), cuda or cuda:N."),
    series: bool = typer.Option(False, "--series", help="Audit the shipped checkpoints over training instead: "
                                "the adversarial training's epochs and the random-label control, each as an "
                                "`audit series` (default attack pgd at 0.1,0.3; OUT/adversarial/, OUT/control/)."),
):
    from audit.demo import SERIES_ATTACKS, SERIES_EPS, run_demo, run_demo_series
    from audit.options import resolve_device

    resolve_device(device)  # a device that is not there: one line before anything is printed
    if series:
        given = _given_flags(ctx, exclude=set())
        run_demo_series(out, attacks=attack if "attack" in given else list(SERIES_ATTACKS),
                        eps=eps if "eps" in given else SERIES_EPS, steps=steps, samples=samples, seed=seed,
                        series=_series_and_report, console=_console(), device=device)
        return
    run_demo(out, attacks=attack, eps=eps, steps=steps, samples=samples, seed=seed,
             audit=_audit_and_report, console=_console(), device=device)


def _read_json(path: Path) -> dict:
    import json

    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AuditError(f"cannot read the report {path}: {exc}") from None


def _read_report(path: Path, data: dict | None = None) -> dict:
    """A report.json, validated against the schema: one error line when it is not one."""
    from reports.schema import validate_report

    report = _read_json(path) if data is None else data
    validate_report(report, str(path))
    return report


def _is_series(data) -> bool:
    return isinstance(data, dict) and "checkpoints" in data and "changes" in data


@app.command("report", help="Re-render a report from its report.json alone (no model, no torch); given a "
             "series.json, its review page and trend table.")
def report_cmd(
    report: Path = typer.Argument(..., metavar="REPORT_JSON", help="A report.json or series.json written by "
                                  "`audit`."),
    html: Path | None = typer.Option(None, help="Write the HTML review page here (a series page links to the "
                                     "checkpoints' pages relative to its own folder: write it beside series.json)."),
    junit: Path | None = typer.Option(None, help="Write JUnit XML here (a series: of its gated checkpoint)."),
):
    from reports.schema import AuditResult, write_atomic
    from reports.terminal import render_summary

    data = _read_json(report)
    if _is_series(data):
        _series_report(Path(report), data, html, junit)
        return
    data = _read_report(report, data)
    if html is not None:
        from reports.html import render_html

        write_atomic(html, render_html(data, base_dir=Path(report).parent))
    if junit is not None:
        from reports.junit import junit_xml

        write_atomic(junit, junit_xml(data))
    render_summary(AuditResult.from_dict(data), _console(), None)


def _series_report(path: Path, series: dict, html: Path | None, junit: Path | None) -> None:
    """`audit report series.json`: the series page, the gated checkpoint's JUnit XML, the trend table."""
    from reports.schema import write_atomic
    from reports.series import closing_lines, trend_table, validate_series

    validate_series(series, str(path))
    files = {}
    if junit is not None:
        from reports.junit import junit_xml

        gated = next(c for c in series["checkpoints"] if c["name"] == series["gates"]["checkpoint"])
        files[junit] = junit_xml(_read_report(path.parent / gated["report"]))
    if html is not None:
        from reports.html import render_series_html

        files[html] = render_series_html(series)
    for where, text in files.items():
        write_atomic(where, text)
    console = _console()
    console.print(trend_table(series))
    for line in closing_lines(series):
        console.print(line, markup=False, highlight=False, soft_wrap=True)


@app.command("compare", help="Compare two reports (base, new): per metric the delta; clean and robust accuracies "
             "with a paired McNemar test when both audited the same samples (else Fisher's exact test), Holm "
             "across the tested rows; exit 1 only on a significant regression beyond the tolerance.")
def compare_cmd(
    base: Path = typer.Argument(..., metavar="BASE_JSON"),
    new: Path = typer.Argument(..., metavar="NEW_JSON"),
    tolerance: float = typer.Option(0.01, help="Allowed drop before a metric counts as regressed (absolute; "
                                    "score points x100, minimal norms relative)."),
    alpha: float = typer.Option(0.05, help="One-sided significance level of a regression (Holm-adjusted "
                                "p-values across the tested rows); strictly between 0 and 1."),
    html: Path | None = typer.Option(None, help="Write the side-by-side HTML comparison here."),
):
    from audit.stats import check_level
    from reports.compare import compare, comparison_table
    from reports.schema import write_atomic

    if tolerance < 0:
        raise AuditError(f"--tolerance must not be negative, got {tolerance}")
    try:
        check_level(alpha, "--alpha")
    except ValueError as exc:
        raise AuditError(str(exc)) from None
    base_report, new_report = _read_report(base), _read_report(new)
    comparison = compare(base_report, new_report, tolerance, alpha)
    if html is not None:
        from reports.html import render_compare_html

        write_atomic(html, render_compare_html(base_report, new_report, comparison))
    console = _console()
    console.print(("warning: " if not comparison["paired"] else "") + comparison["note"], markup=False,
                  highlight=False, soft_wrap=True)
    console.print(comparison_table(comparison))
    if comparison["regressed"]:
        names = [row["metric"] for row in comparison["rows"] if row["regressed"]]
        raise GateFailed(f"{len(names)} metric(s) regressed significantly (one-sided alpha {alpha:g}, Holm) and "
                         f"beyond the tolerance: {', '.join(names[:5])}" + (" ..." if len(names) > 5 else ""))


@app.command("hierarchy", help="Print the class tree the audit uses for mistake severity (WordNet hypernyms, each "
             "class's longest path to the root, single-child nodes removed; heights: a class 0, a node 1 + its "
             "highest child), and with --export FILE.npz write classes, synsets and lca_height.")
def hierarchy_cmd(
    labelset: str | None = typer.Argument(None, metavar="LABELSET", help="A built-in label set (imagenet-1k, "
                                          "cifar10, cifar100, fashion-mnist); omit it with --class-synsets."),
    class_synsets: Path | None = typer.Option(None, "--class-synsets", help="A file mapping your class names to "
                                              "WordNet synsets (name like dog.n.01, or wnid like n02084071)."),
    wordnet: Path | None = typer.Option(None, "--wordnet", help="A WordNet 3.0 dict folder (e.g. /usr/share/wordnet), "
                                        "read with --class-synsets."),
    export: Path | None = typer.Option(None, "--export", help="Write classes, synsets (wnids) and lca_height "
                                       "(classes x classes, integers) to this .npz (np.load reads it without "
                                       "pickle)."),
):
    if (labelset is None) == (class_synsets is None):
        raise AuditError("name a built-in label set (e.g. `audit hierarchy cifar10`) or give --class-synsets FILE "
                         "with --wordnet DIR, not both")
    if (class_synsets is None) != (wordnet is None):
        raise AuditError("--class-synsets and --wordnet go together: the synsets are looked up in that WordNet folder")
    from rich.markup import escape

    from audit.analyses.hierarchy import tree_view
    from reports.schema import write_atomic

    found = tree_view.mapped_classes(labelset, class_synsets, wordnet)
    console = _console()
    tree_view.show(found, console)
    if export is not None:
        write_atomic(export, tree_view.export(found))
        n = len(found.mapped)
        console.print(f"wrote {escape(str(export))}: classes, synsets, lca_height ({n} x {n})")


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv) or ["--help"]
    # OpenMP threads that spin while waiting make torch several times slower on a shared or busy CPU; waiting
    # passively costs little on an idle one. Set before torch is imported; the user's own setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if args and args[0] not in COMMANDS and args[0] not in ("--help", "-h", "--version"):
        args.insert(0, "run")
    try:
        code = app(args=args, prog_name="audit", standalone_mode=False)
    except UsageError as exc:
        command = exc.ctx.command_path if exc.ctx else "audit"
        _fail(f"error: {exc.format_message()} (see `{command} --help`)", EXIT_USAGE)
    except typer.Abort:
        _fail("interrupted", 130)
    except AuditError as exc:
        _fail(f"error: {exc}", exc.exit_code)
    except GateFailed as exc:
        _fail(f"gate failed: {exc}", exc.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except Exception as exc:  # noqa: BLE001 - the last line of defence: no traceback for users
        if os.environ.get("AUDIT_DEBUG"):
            raise
        _fail(f"internal error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
              "(set AUDIT_DEBUG=1 for the traceback, and please report it)", EXIT_INTERNAL)
    else:
        raise SystemExit(code if isinstance(code, int) else 0)


def _fail(message: str, code: int) -> None:
    print(message, file=sys.stderr)
    raise SystemExit(code)


__all__ = ["main", "app", "EXIT_USAGE"]
