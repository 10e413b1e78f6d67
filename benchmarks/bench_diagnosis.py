"""How well does ``gradsight.diagnose`` name the fault of a training run? A detection benchmark.

Every run of ``diagnosis_setups.py`` has a fault injected on purpose (or none: the healthy
controls), confirmed by a measurement of our own in plain PyTorch (never gradsight's numbers).
Each run is trained once under ``gradsight.watch(model, optimizer=opt, loss_fn=loss_fn)`` with
the default recording schedule, and ``gradsight.diagnose(watcher.history)`` is called with
nothing else, as a practitioner would.

Scoring (single label). A run's PREDICTED class is the class of the first finding of severity
warning or critical in the list ``diagnose`` returns (most severe first), mapped by
``CODE_TO_CLASS``; a code not in the map predicts "other" (always wrong); no warning/critical
finding predicts "healthy". Per class: precision, recall and F1 of that prediction against the
injected class, and their macro average over the classes that have runs. "First finding
right" is the share of faulty runs predicted as their own class. False alarms: healthy runs
with any warning or critical finding. A run whose confirmation fails (the injected fault did
not happen, or a healthy run shows a fault signature or misses its accuracy) is excluded from
scoring and listed as unconfirmed — never relabelled.

The baseline is AUTOTRAINER (Zhang et al., ICSE 2021), ported from ``shiningrain/AUTOTRAINER``
(commit 03a463e): ``AutoTrainer/utils/monitor.py`` (``IssueMonitor``, ``gradient_issue``,
``loss_issue``, ``weights_issue``, ``layer_issue``, ``loss_function_issue``, ``ol_judge``),
its callback ``AutoTrainer/utils/utils.py`` (``LossHistory.on_epoch_end``) and the priority
``problem_evaluation`` / ``filtered_issue`` of ``AutoTrainer/utils/modules.py``, with the
thresholds of ``default_param`` in ``utils.py``: β1 = 1e-3, β2 = 1e-4 (vanishing: ‖∂W_1‖/‖∂W_L‖
< β1 and ‖∂W_1‖ < β2), β3 = 70 (exploding: ratio > β3), γ = 0.7 (dying ReLU: share of zero
gradient entries ≥ γ), ζ = 0.03 and η = 0.2 (unstable: accuracy swings ≥ ζ in ≥ η of the
epochs), δ = 0.01 (no epoch gains ≥ δ accuracy), Θ = 0.7 (satisfactory accuracy), ω1 = 10,
ω2 = 1; loss ≥ 1e3 counts as NaN; checks every 3 epochs (``checktype='epoch_3'``) and
``determine_threshold=1`` (both as in ``reproduce.py``). It reads the gradients of the first
training batch, the layer outputs on it, the weights and Keras' per-epoch loss/accuracy, all
computed in our own training loop on the same runs. A PyTorch loss with a built-in link is
given to it as its Keras twin (CrossEntropyLoss = softmax output + categorical_crossentropy,
BCEWithLogitsLoss = sigmoid output + binary_crossentropy); a model ending in nn.Softmax or
nn.Sigmoid shows that module as its output activation. Its issues map to classes by
``ISSUE_TO_CLASS``; it has no rule for saturation, so it never predicts it.

    .venv/bin/python benchmarks/bench_diagnosis.py [--quick] [--rescore | --retrain]
                                                   [--jobs 2] [--json PATH]

Trained runs are cached in ``benchmarks/.cache/diagnosis/`` (one pickle per set-up and seed,
keyed by a hash of ``diagnosis_setups.py``): ``--rescore`` only re-runs ``diagnose`` (and the
baseline) on them; ``--retrain`` trains everything again (do so after changing ``watch``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import pickle
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import diagnosis_setups as setups  # noqa: E402

import gradsight  # noqa: E402

CACHE = HERE / ".cache" / "diagnosis"
CLASSES = setups.CLASSES
FAULTS = setups.FAULTS

CODE_TO_CLASS = {
    "vanishing-gradients": "vanishing",
    "vanishing-over-time": "vanishing",
    "exploding-gradients": "exploding",
    "exploding-over-time": "exploding",
    "nonfinite": "exploding",
    "dead-units": "dying_relu",
    "saturated-layers": "saturation",
    "saturated-wrong-units": "saturation",
    "small-updates": "tiny_lr",
    "oscillating-loss": "oscillating",
    "rising-loss": "oscillating",
    "large-updates": "oscillating",
    "output-loss-mismatch": "mismatch",
}
ALARMS = ("critical", "warning")

# --------------------------------------------------------------------------- scoring


def first_alarm(findings: Iterable[Any]) -> Any:
    """The first finding of severity warning or critical, or None."""
    return next((f for f in findings if f.severity in ALARMS), None)


def predicted_class(findings: Iterable[Any]) -> tuple[str, str | None]:
    """(class, code) of the first warning/critical finding; ("healthy", None) without one."""
    finding = first_alarm(findings)
    if finding is None:
        return "healthy", None
    return CODE_TO_CLASS.get(finding.code, "other"), finding.code


def classification_table(pairs: list[tuple[str, str]],
                         classes: Iterable[str] = CLASSES) -> dict[str, Any]:
    """Precision/recall/F1 per class of (true, predicted) pairs, macro F1 over the classes
    with runs, and the share of faulty runs predicted right ("first finding right").

    A class never predicted has precision 0 (and F1 0) when it has runs; a class without
    runs is left out of the macro average.
    """
    rows = {}
    for name in classes:
        tp = sum(t == name and p == name for t, p in pairs)
        true = sum(t == name for t, _ in pairs)
        predicted = sum(p == name for _, p in pairs)
        precision = tp / predicted if predicted else 0.0
        recall = tp / true if true else math.nan
        f1 = (2 * precision * recall / (precision + recall)
              if true and precision + recall > 0 else (0.0 if true else math.nan))
        rows[name] = {"runs": true, "predicted": predicted, "precision": precision,
                      "recall": recall, "f1": f1}
    with_runs = [row["f1"] for row in rows.values() if row["runs"]]
    faulty = [(t, p) for t, p in pairs if t != "healthy"]
    return {"classes": rows,
            "macro_f1": sum(with_runs) / len(with_runs) if with_runs else math.nan,
            "first_right": (sum(t == p for t, p in faulty) / len(faulty)) if faulty
            else math.nan,
            "faulty_runs": len(faulty)}


# --------------------------------------------------------------------------- AUTOTRAINER port

AT_PARAMS = {"beta_1": 1e-3, "beta_2": 1e-4, "beta_3": 70, "gamma": 0.7, "zeta": 0.03,
             "eta": 0.2, "delta": 0.01, "Theta": 0.7, "omega_1": 10, "omega_2": 1}
AT_CHECKGAP = 3
AT_DETERMINE_THRESHOLD = 1
AT_PRIORITY = {"activation_issue": 3, "loss_issue": 3, "abnormal_data": 4, "vanish": 2,
               "explode": 2, "relu": 2, "not_converge": 1, "unstable": 1, "overfit": 0,
               "need_train": 0}
ISSUE_TO_CLASS = {"vanish": "vanishing", "explode": "exploding", "relu": "dying_relu",
                  "unstable": "oscillating", "not_converge": "tiny_lr",
                  "activation_issue": "mismatch", "loss_issue": "mismatch",
                  "abnormal_data": "other"}


def at_has_nan(values: Iterable[float]) -> bool:
    return any(math.isnan(v) or math.isinf(v) for v in values)


def at_max_delta_acc(acc: list[float]) -> float:
    return max([0.0] + [b - a for a, b in zip(acc, acc[1:], strict=False)])


def at_ol_judge(acc: list[float], threshold: float, rate: float) -> bool:
    """monitor.py ``ol_judge``: pairs of local maxima and minima of the training accuracy
    that differ by ≥ threshold, in ≥ rate × (number of epochs)."""
    maximum, minimum = [], []
    for i in range(1, len(acc) - 1):
        if acc[i] - acc[i - 1] >= 0 and acc[i] - acc[i + 1] >= 0:
            maximum.append(acc[i])
        if acc[i] - acc[i - 1] <= 0 and acc[i] - acc[i + 1] <= 0:
            minimum.append(acc[i])
    count = sum(maximum[i] - minimum[i] >= threshold
                for i in range(min(len(maximum), len(minimum))))
    return count >= rate * len(acc)


def at_gradient_issue(feature: dict[str, Any], summary: dict[str, Any],
                      params: dict[str, float]) -> None:
    """monitor.py ``gradient_issue`` on :func:`autotrainer_gradient_summary`'s numbers."""
    if summary["nan"]:
        feature["nan_gradient"] = True
        return
    rate = summary["gra_rate"]
    if rate < params["beta_1"] and summary["norm_kernel_first"] < params["beta_2"]:
        feature["vanish_gradient"] += 1
    if rate > params["beta_3"]:
        feature["explode_gradient"] += 1
    if summary["total_zero_ratio"] >= params["gamma"]:
        feature["died_relu"] += 1


def at_weights_issue(feature: dict[str, Any], summary: dict[str, Any],
                     threshold_large: float = 5) -> None:
    if summary["nan"]:
        feature["nan_weight"] = True
        return
    if summary["max_abs"] > threshold_large:
        feature["large_weight"] += 1


def at_loss_issue(feature: dict[str, Any], history: dict[str, list[float]], total_epoch: int,
                  satisfied_acc: float, checkgap: int, unstable_threshold: float = 0.05,
                  judgment_point: float = 0.3, unstable_rate: float = 0.25,
                  epsilon: float = 10e-3, sc_threshold: float = 0.01) -> None:
    """monitor.py ``loss_issue``."""
    train_loss, train_acc = history["loss"], history["acc"]
    test_loss, test_acc = history["val_loss"], history["val_acc"]
    if not train_loss:
        return
    if (at_has_nan(test_loss) or at_has_nan(train_loss)
            or max(test_loss) >= 1e3 or max(train_loss) >= 1e3):
        feature["nan_loss"] = True
        return
    if min(test_loss) < 0 or min(train_loss) < 0:
        feature["abnormal_loss"] = True
    current_epoch = len(train_loss)
    if current_epoch >= judgment_point * total_epoch - checkgap:
        if ((train_acc[-1] <= 0.9 and train_acc[-1] - test_acc[-1] >= 0.1)
                or (train_acc[-1] > 0.9 and train_acc[-1] - test_acc[-1] >= 0.07)):
            feature["test_not_well"] += 1
        bad_count = 0
        for i in range(current_epoch - 1):
            if (train_loss[-i - 1] - train_loss[-i - 2] < -epsilon
                    and test_loss[-i - 1] - test_loss[-i - 2] > epsilon):
                bad_count += 1
            else:
                feature["test_turn_bad"] = bad_count
                break
        if at_ol_judge(train_acc, unstable_threshold, unstable_rate):
            feature["unstable_loss"] = True
        if max(test_acc) < satisfied_acc and max(train_acc) < satisfied_acc:
            feature["not_converge"] = True
        if at_max_delta_acc(test_acc) < sc_threshold and at_max_delta_acc(train_acc) < sc_threshold:
            feature["sc_accuracy"] = True


def at_loss_function_issue(feature: dict[str, Any], loss: str, output_shape: int,
                           activation: str) -> None:
    """monitor.py ``loss_function_issue``: the loss's name against the output layer."""
    if output_shape <= 2 and "binary" in loss:
        feature["improper_loss"] = False
    elif output_shape > 2 and "categorical" in loss:
        feature["improper_loss"] = False
    else:
        feature["improper_loss"] = True
    if not feature["improper_loss"]:
        if activation != "sigmoid" and "binary" in loss and output_shape != 2:
            feature["activation_output"] = True
        elif activation != "softmax" and "categorical" in loss:
            feature["activation_output"] = True
        elif activation != "linear" and "mean" in loss:
            feature["activation_output"] = True


def at_layer_issue(feature: dict[str, Any], summary: dict[str, Any],
                   input_threshold: float = 10, acti_threshold: float = 1) -> None:
    """monitor.py ``layer_issue`` on :func:`autotrainer_layer_summary`'s numbers."""
    if summary["output_row_sum_max"] > acti_threshold + 0.1 or summary["output_nan"]:
        feature["activation_output"] = True
    for mean_layer in summary["hidden_mean_abs"]:
        if mean_layer >= input_threshold and not feature["activation_output"]:
            feature["abnormal_output"] = True
            break


class AutoTrainerMonitor:
    """monitor.py ``IssueMonitor`` (determine + judge_issue), fed our summaries."""

    def __init__(self, total_epoch: int, params: dict[str, float] = AT_PARAMS,
                 determine_threshold: int = AT_DETERMINE_THRESHOLD) -> None:
        self.total_epoch, self.params = total_epoch, params
        self.determine_threshold = determine_threshold
        self.issue_list: list[str] = []
        self.feature: dict[str, Any] = {
            "not_converge": False, "unstable_loss": False, "nan_loss": False,
            "abnormal_loss": False, "test_not_well": 0, "test_turn_bad": 0,
            "sc_accuracy": False, "died_relu": False, "vanish_gradient": False,
            "explode_gradient": False, "nan_gradient": False, "large_weight": 0,
            "nan_weight": False, "weight_change_little": 0}

    def determine(self, run: dict[str, Any], history: dict[str, list[float]],
                  check: dict[str, Any], checkgap: int, layer_output: bool) -> list[str]:
        if "improper_loss" not in self.feature:
            at_loss_function_issue(self.feature, run["loss"], run["output_shape"],
                                   run["activation"])
        if layer_output:
            at_layer_issue(self.feature, check["layers"], self.params["omega_1"],
                           self.params["omega_2"])
        at_gradient_issue(self.feature, check["gradient"], self.params)
        at_weights_issue(self.feature, check["weights"])
        at_loss_issue(self.feature, history, self.total_epoch, self.params["Theta"], checkgap,
                      unstable_threshold=self.params["zeta"],
                      unstable_rate=self.params["eta"], sc_threshold=self.params["delta"])
        self.judge_issue(layer_output)
        return self.issue_list

    def judge_issue(self, layer_output: bool) -> None:
        f, threshold = self.feature, self.determine_threshold
        if layer_output and self.issue_list == []:
            if f["abnormal_output"]:
                self.issue_list.append("abnormal_data")
            if f["nan_loss"] or f["abnormal_loss"]:
                if f["abnormal_loss"]:
                    self.issue_list.append("loss_issue")
                elif f["activation_output"]:
                    self.issue_list.append("activation_issue")
                elif f["nan_weight"] or f["nan_gradient"]:
                    self.issue_list.append("explode")
            if f["not_converge"] or f["sc_accuracy"]:
                if f["activation_output"]:
                    self.issue_list.append("activation_issue")
                elif f["died_relu"] >= threshold:
                    self.issue_list.append("relu")
                elif f["explode_gradient"] >= threshold:
                    self.issue_list.append("explode")
                elif f["vanish_gradient"] >= threshold:
                    self.issue_list.append("vanish")
                elif f["not_converge"] and f["sc_accuracy"] and not f["abnormal_output"]:
                    self.issue_list.append("not_converge")
            if f["unstable_loss"]:
                self.issue_list.append("activation_issue" if f["activation_output"]
                                       else "unstable")
            if not f["activation_output"] and f["improper_loss"]:
                self.issue_list.append("loss_issue")
            # AUTOTRAINER takes list(set(...)); insertion order keeps ties deterministic
            self.issue_list = list(dict.fromkeys(self.issue_list))
        elif layer_output and f["nan_loss"]:
            if f["nan_weight"] or f["nan_gradient"]:
                self.issue_list.append("explode")


def at_filtered_issue(issue_list: list[str]) -> list[str]:
    """modules.py ``filtered_issue``: keep the issue of the highest priority (first on ties)."""
    if len(issue_list) > 1:
        best: list[str] = []
        for issue in issue_list:
            if best == [] or AT_PRIORITY[issue] > AT_PRIORITY[best[0]]:
                best = [issue]
        return best
    return issue_list


def autotrainer_detect(run: dict[str, Any], checkgap: int = AT_CHECKGAP) -> tuple[str | None,
                                                                                   int | None]:
    """Replay AUTOTRAINER's callback over the run's epochs (utils.py ``on_epoch_end``): the
    first issue it reports (training stops there) and the epoch, or (None, None)."""
    monitor = AutoTrainerMonitor(run["total_epoch"])
    history: dict[str, list[float]] = {"loss": [], "acc": [], "val_loss": [], "val_acc": []}
    mid_check = True
    for epoch in range(run["total_epoch"]):
        for key in history:
            history[key].append(run["history"][key][epoch])
        if epoch % checkgap != 0:
            continue
        f = monitor.feature
        layer_output = bool(f["abnormal_loss"] or f["nan_loss"] or f["sc_accuracy"]
                            or (monitor.total_epoch * 0.5 <= epoch and mid_check))
        if layer_output:
            f.setdefault("activation_output", False)
            f.setdefault("abnormal_output", False)
        if monitor.total_epoch * 0.5 <= epoch and mid_check:
            mid_check = False
        issues = at_filtered_issue(monitor.determine(run, history, run["checks"][epoch],
                                                     checkgap, layer_output))
        if issues:
            return issues[0], epoch
    return None, None


# --------------------------------------------------------------------------- runs and cache


def source_hash() -> str:
    return hashlib.sha256(Path(setups.__file__).read_bytes()).hexdigest()[:12]


def cache_path(name: str, seed: int, digest: str) -> Path:
    return CACHE / f"{name}-s{seed}-{digest}.pkl"


def _train_one(name: str, seed: int, bench_dir: str) -> dict[str, Any]:
    """Train one run (in a worker process too: the set-ups are found by name)."""
    # a fresh worker process knows neither this folder nor the set-ups: import them here
    if bench_dir not in sys.path:
        sys.path.insert(0, bench_dir)
    import warnings

    import diagnosis_setups as ds
    import torch

    torch.set_num_threads(1)
    setup = next(s for s in ds.SETUPS if s.name == name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # overflow warnings of the runs that blow up
        return ds.train_run(setup, seed)


def collect_runs(selection: list[setups.Setup], *, use_cache: bool = True,
                 rescore: bool = False, jobs: int = 2) -> tuple[list[dict[str, Any]], float]:
    """Every (set-up, seed) run: from the cache where allowed, else trained (``jobs``
    processes). Returns the runs and the seconds spent training."""
    digest = source_hash()
    wanted = [(s.name, seed) for s in selection for seed in s.seeds]
    runs: dict[tuple[str, int], dict[str, Any]] = {}
    if use_cache or rescore:
        for key in wanted:
            path = cache_path(*key, digest)
            if path.exists():
                with path.open("rb") as handle:
                    runs[key] = pickle.load(handle)  # noqa: S301 - our own cache
    missing = [key for key in wanted if key not in runs]
    if rescore and missing:
        raise SystemExit(f"--rescore: {len(missing)} runs are not cached for this version of "
                         f"diagnosis_setups.py ({digest}), e.g. {missing[0]}; run without "
                         "--rescore first")
    started = time.perf_counter()
    if missing:
        if jobs > 1:
            from joblib import Parallel, delayed  # only when training in parallel

            trained = Parallel(n_jobs=jobs)(delayed(_train_one)(name, seed, str(HERE))
                                            for name, seed in missing)
        else:
            trained = [_train_one(name, seed, str(HERE)) for name, seed in missing]
        for key, run in zip(missing, trained, strict=True):
            runs[key] = run
            if use_cache:
                CACHE.mkdir(parents=True, exist_ok=True)
                temp = cache_path(*key, digest).with_suffix(".tmp")
                with temp.open("wb") as handle:
                    pickle.dump(run, handle)
                temp.replace(cache_path(*key, digest))
                for stale in CACHE.glob(f"{key[0]}-s{key[1]}-*.pkl"):  # older set-up files
                    if stale != cache_path(*key, digest):
                        stale.unlink()
    return [runs[key] for key in wanted], time.perf_counter() - started


def score_run(run: dict[str, Any]) -> dict[str, Any]:
    """Confirmation, gradsight's diagnosis and AUTOTRAINER's, for one run."""
    confirmed, reason, co = setups.confirmation(run)
    findings = gradsight.diagnose(run["history"])
    predicted, code = predicted_class(findings)
    alarms = [[f.code, f.severity] for f in findings if f.severity in ALARMS]
    anywhere = run["fault"] != "healthy" and any(
        CODE_TO_CLASS.get(c) == run["fault"] for c, _ in alarms)
    issue, epoch = autotrainer_detect(run["autotrainer"])
    return {"name": f"{run['setup']}/s{run['seed']}", "setup": run["setup"],
            "seed": run["seed"], "fault": run["fault"], "family": run["family"],
            "arch": run["arch"], "confirmed": confirmed, "unconfirmed_reason": reason,
            "co_signatures": co, "accuracy": run["accuracy"], "train_seconds": run["seconds"],
            "gradsight": {"predicted": predicted, "first_code": code, "alarms": alarms,
                          "named_anywhere": anywhere},
            "autotrainer": {"predicted": ISSUE_TO_CLASS.get(issue, "other") if issue
                            else "healthy", "issue": issue, "epoch": epoch}}


def summarise(scored: list[dict[str, Any]]) -> dict[str, Any]:
    kept = [r for r in scored if r["confirmed"]]
    result: dict[str, Any] = {"runs": len(scored), "confirmed": len(kept)}
    for tool in ("gradsight", "autotrainer"):
        pairs = [(r["fault"], r[tool]["predicted"]) for r in kept]
        table = classification_table(pairs)
        healthy = [r for r in kept if r["fault"] == "healthy"]
        alarms = [r for r in healthy if r[tool]["predicted"] != "healthy"]
        table["healthy_runs"] = len(healthy)
        table["false_alarms"] = len(alarms)
        table["false_alarm_share"] = len(alarms) / len(healthy) if healthy else math.nan
        result[tool] = table
    faulty = [r for r in kept if r["fault"] != "healthy"]
    result["gradsight"]["named_anywhere"] = (
        sum(r["gradsight"]["named_anywhere"] for r in faulty) / len(faulty) if faulty
        else math.nan)
    return result


def run_benchmark(quick: bool = False, use_cache: bool = True, rescore: bool = False,
                  jobs: int = 2) -> dict[str, Any]:
    """Train (or load) the runs, score them; everything the report prints, as a dict."""
    started = time.perf_counter()
    selection = setups.quick_setups() if quick else setups.SETUPS
    runs, train_seconds = collect_runs(selection, use_cache=use_cache, rescore=rescore,
                                       jobs=jobs)
    score_started = time.perf_counter()
    scored = [score_run(run) for run in runs]
    summary = summarise(scored)
    summary.update({"mode": "quick" if quick else "full", "train_seconds": train_seconds,
                    "score_seconds": time.perf_counter() - score_started,
                    "wall_seconds": time.perf_counter() - started,
                    "setups_hash": source_hash(), "jobs": jobs})
    return {"summary": summary, "runs": scored}


# --------------------------------------------------------------------------- report


def _fmt(value: float) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else f"{value:.2f}"


def print_report(result: dict[str, Any]) -> None:
    from rich.console import Console  # only the command line prints
    from rich.table import Table

    console = Console()
    summary, scored = result["summary"], result["runs"]
    g, a = summary["gradsight"], summary["autotrainer"]
    table = Table(title=f"Diagnosis benchmark ({summary['mode']}): {summary['confirmed']} of "
                        f"{summary['runs']} runs confirmed and scored")
    for column in ("class", "runs", "P", "R", "F1", "AT P", "AT R", "AT F1"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for name in CLASSES:
        gr, ar = g["classes"][name], a["classes"][name]
        table.add_row(name, str(gr["runs"]), _fmt(gr["precision"]), _fmt(gr["recall"]),
                      _fmt(gr["f1"]), _fmt(ar["precision"]), _fmt(ar["recall"]),
                      _fmt(ar["f1"]))
    table.add_row("macro F1", "", "", "", _fmt(g["macro_f1"]), "", "", _fmt(a["macro_f1"]))
    console.print(table)
    console.print(f"first finding right: gradsight {g['first_right']:.1%}, AUTOTRAINER "
                  f"{a['first_right']:.1%} of {g['faulty_runs']} faulty runs "
                  f"(gradsight names the fault anywhere in its warnings: "
                  f"{g['named_anywhere']:.1%})")
    console.print(f"false alarms: gradsight {g['false_alarms']}/{g['healthy_runs']} "
                  f"({g['false_alarm_share']:.1%}), AUTOTRAINER {a['false_alarms']}/"
                  f"{a['healthy_runs']} ({a['false_alarm_share']:.1%})")
    kept = [r for r in scored if r["confirmed"]]
    for r in kept:
        if r["fault"] == "healthy" and r["gradsight"]["alarms"]:
            console.print(f"  false alarm  {r['name']}: {_codes(r)}")
    for r in kept:
        if r["fault"] != "healthy" and r["gradsight"]["predicted"] != r["fault"]:
            console.print(f"  miss  {r['name']} ({r['fault']}) → "
                          f"{r['gradsight']['predicted']}: {_codes(r)}")
    for r in kept:
        if r["fault"] != "healthy" and r["autotrainer"]["predicted"] != r["fault"]:
            console.print(f"  AT miss  {r['name']} ({r['fault']}) → "
                          f"{r['autotrainer']['issue'] or 'no issue'}", style="dim")
    for r in kept:
        if r["fault"] == "healthy" and r["autotrainer"]["issue"]:
            console.print(f"  AT false alarm  {r['name']}: {r['autotrainer']['issue']} "
                          f"(epoch {r['autotrainer']['epoch']})", style="dim")
    for r in scored:
        if not r["confirmed"]:
            console.print(f"  unconfirmed  {r['name']}: {r['unconfirmed_reason']}")
    co = [r for r in kept if r["co_signatures"]]
    if co:
        console.print("  faulty runs that also show another fault's signature: " + ", ".join(
            f"{r['name']} (+{'+'.join(r['co_signatures'])})" for r in co), style="dim")
    console.print(f"wall time {summary['wall_seconds']:.1f} s (training "
                  f"{summary['train_seconds']:.1f} s with {summary['jobs']} jobs, scoring "
                  f"{summary['score_seconds']:.1f} s)")


def _codes(r: dict[str, Any]) -> str:
    return ", ".join(f"{code} ({severity})" for code, severity in r["gradsight"]["alarms"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few set-ups, first seed")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--rescore", action="store_true", help="cached runs only")
    mode.add_argument("--retrain", action="store_true", help="ignore the cache")
    parser.add_argument("--jobs", type=int, default=2, help="training processes")
    parser.add_argument("--json", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)
    result = run_benchmark(quick=args.quick, use_cache=not args.retrain, rescore=args.rescore,
                           jobs=args.jobs)
    print_report(result)
    if args.json:
        args.json.write_text(json.dumps(_plain(result), indent=1, allow_nan=False))
    return 0


def _plain(value: Any) -> Any:
    """JSON-safe: NaN/inf become null, tuples lists, anything else unknown its text."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)


if __name__ == "__main__":
    sys.exit(main())
