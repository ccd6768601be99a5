"""Stage ``evaluate``: model bundle + prepared HDF5 -> OA, AA, kappa, per-class accuracy, confusion matrix.

Scores the test split only. Per class it also reports the user's and producer's accuracy and F1 with
95 % intervals (:func:`hsicls.science.olofsson.assess` on the test pixels, a simple random sample of the
labelled pixels), and the expected calibration error of the confidences before and after the
bundle's temperature (:mod:`hsicls.engine.calibration`). The bundle must match the prepared file: same classes, same
preprocessing (bands and PCA), otherwise the numbers would be meaningless and it is an error.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from hsicls import console
from hsicls.artifacts.bundle import Bundle, load_bundle
from hsicls.artifacts.prepared import fit_on_words, load_prepared
from hsicls.config import EvaluateOptions
from hsicls.engine.inference import Runner
from hsicls.engine.runtime import tune_allocator
from hsicls.errors import HsiclsError
from hsicls.io.atomic import write_texts
from hsicls.io.guard import Declared, OutputSet, report_outputs
from hsicls.science.metrics import classification_report


def check_compatible(bundle: Bundle, prep, bundle_path, prepared_path) -> None:
    if list(bundle.class_names) != list(prep.class_names):
        raise HsiclsError(
            f"{bundle_path}: the model's classes ({len(bundle.class_names)}: {', '.join(bundle.class_names[:4])}...) "
            f"differ from those of {prepared_path} ({len(prep.class_names)})"
        )
    mine, theirs = bundle.preprocessing, prep.preprocessing
    if mine.n_bands != theirs.n_bands or mine.components.shape != theirs.components.shape:
        raise HsiclsError(
            f"{bundle_path}: the model expects {mine.n_bands} bands reduced to {mine.n_components}, "
            f"but {prepared_path} has {theirs.n_bands} bands reduced to {theirs.n_components}"
        )
    pairs = [
        (mine.mean, theirs.mean),
        (mine.std, theirs.std),
        (mine.components, theirs.components),
        (mine.pca_mean, theirs.pca_mean),
    ]
    if not all(np.allclose(a, b) for a, b in pairs):
        raise HsiclsError(f"{bundle_path}: {prepared_path} was preprocessed differently from the model's training data")
    seen = None
    for k in ("train", "val"):
        m = bundle.split_masks.get(k)
        if m is not None and m.shape == prep.test.shape:
            seen = m if seen is None else (seen | m)
    if seen is not None and (seen & prep.test).any():
        raise HsiclsError(
            f"{prepared_path}: its test split holds {int((seen & prep.test).sum())} pixels the model {bundle_path} "
            f"was trained or selected on; evaluate on the prepared file it was trained from"
        )


def evaluate(bundle_path: str | Path, prepared_path: str | Path, options: EvaluateOptions | None = None, **overrides) -> dict:
    """Returns a JSON-ready report: metrics plus what produced them (split protocol, seeds, counts).
    ``overrides`` replace single options (``evaluate(m, p, device="cpu")``)."""
    options = (options or EvaluateOptions()).replace(**overrides).validate()
    tune_allocator()
    bundle = load_bundle(bundle_path)
    prep = load_prepared(prepared_path).features_for(bundle.preprocessing)
    check_compatible(bundle, prep, bundle_path, prepared_path)
    rows, cols = np.nonzero(prep.test)
    if rows.size == 0:
        raise HsiclsError(f"{prepared_path}: the test split is empty")
    runner = Runner.resolve(
        options.device,
        options.precision,
        options.batch_size,
        bundle.training.get("bf16_error"),
        job_pixels=int(rows.size),
        compile=options.compile,
    )
    model = bundle.build_model().to(runner.device)
    patch = bundle.model.patch_size
    padded = prep.padded(patch, bundle.model.padding).to(runner.device)  # every scene padded on its own
    as_t = lambda a: torch.as_tensor(a, dtype=torch.long, device=runner.device)
    logits = runner.all_logits(model, padded, as_t(prep.padded_rows(rows, patch)), as_t(cols), patch).cpu()
    truth = prep.labels[rows, cols] - 1
    report = classification_report(truth, logits.argmax(1).numpy(), prep.n_classes)
    report["classes"] = class_table(report["confusion_matrix"], bundle.class_values, bundle.class_names)
    report["calibration"] = _calibration(bundle, logits, truth)
    report.update(per_group_report(prep, rows, cols, truth, logits.argmax(1).numpy()))
    report["precision"] = runner.precision  # fp32, bf16 (autocast or a bf16 copy) or bf16-checked
    report["rechecked_fraction"] = runner.rechecked_fraction
    report["precision_reason"] = runner.precision_reason  # what --precision auto chose and why (its probe)
    report["compiled"], report["compile_reason"] = runner.compiled, runner.compile_reason
    console.debug(f"precision {runner.precision}: {runner.precision_reason}")
    report.update(_provenance(bundle, prep, bundle_path, prepared_path, options, int(rows.size)))
    return report


def per_group_report(prep, rows: np.ndarray, cols: np.ndarray, truth: np.ndarray, pred: np.ndarray) -> dict:
    """A group split: the held-out groups (tiles) by name and OA / AA / kappa on each of them, beside the pooled figures."""
    split = prep.meta.get("split", {})
    if prep.groups is None or split.get("protocol") != "group":
        return {}
    from hsicls.science.splits import group_names

    by = split.get("group_by", "scene")
    g = prep.groups[rows, cols]
    out = []
    for gid in np.unique(g[g > 0]).tolist():
        sel = g == gid
        rep = classification_report(truth[sel], pred[sel], prep.n_classes)
        mask = np.zeros(prep.labels.shape, bool)
        mask[rows[sel], cols[sel]] = True
        name = group_names(prep.groups, mask, prep.scenes, by)[0]
        out.append({"group": name, "pixels": int(sel.sum()), "oa": rep["oa"], "aa": rep["aa"], "kappa": rep["kappa"]})
    return {"held_out_groups": [r["group"] for r in out], "per_group": out}


def class_table(confusion: list[list[int]], codes: list[int], names: list[str]) -> dict:
    """Per class (keyed by label code): user's and producer's accuracy, F1, their 95 % half-widths, from the test
    confusion matrix (rows = true class; :func:`hsicls.science.olofsson.assess` takes rows = predicted (map) class)."""
    from hsicls.science.olofsson import assess

    return assess(np.asarray(confusion).T, codes=list(codes), names=list(names))["classes"]


def _calibration(bundle: Bundle, logits: torch.Tensor, truth: np.ndarray) -> dict:
    """ECE (15 bins) and NLL of the test pixels before and after the bundle's temperature; why it is absent if so."""
    from hsicls.engine.calibration import calibration_report

    rep = calibration_report(logits, torch.as_tensor(truth, dtype=torch.long), bundle.temperature)
    if bundle.temperature is None:
        rep["skipped"] = (bundle.training.get("calibration") or {}).get(
            "skipped", "the bundle has no temperature (trained before calibration existed)"
        )
    return rep


def _provenance(bundle: Bundle, prep, bundle_path, prepared_path, options: EvaluateOptions, n_test: int) -> dict:
    """What produced the numbers: model, split protocol, preprocessing, selection, configurations."""
    training = bundle.training
    return {
        "model": str(bundle_path),
        "model_name": bundle.model.name,
        "prepared": str(prepared_path),
        "class_names": list(prep.class_names),
        "class_values": [int(v) for v in prep.class_values],  # the labels' own codes of classes 1..K
        "scenes": [sc.name for sc in prep.scenes],
        "test_pixels": n_test,
        "train_pixels_per_class": np.bincount(prep.labels[prep.train], minlength=prep.n_classes + 1)[1:].astype(int).tolist(),
        "split": prep.meta.get("split", {}),
        "validation": validation_rule(prep.meta.get("split", {})),
        **prep.preprocessing_record(),
        "selection": training.get("selection"),
        "best_epoch": training.get("best_epoch"),
        "model_seed": training.get("seed"),
        "ema": training.get("ema", 0.0),  # the kept weights are an average over training steps when > 0
        "world_size": training.get("world_size", 1),  # processes that trained it together (torchrun, DDP)
        "global_batch_size": training.get("global_batch_size", training.get("batch_size")),
        "padding": bundle.model.padding,
        "config": options.to_record(),
        "training_config": training.get("config"),
        "split_masks": {k: np.flatnonzero(getattr(prep, k)).tolist() for k in ("train", "val", "test")},
        "grid": list(prep.labels.shape),
        "model_choice": model_choice(training),
    }


def model_choice(training: dict) -> dict | None:
    """``--model auto``'s choice: the rule, the weights and prior adjustment, the validation table (members' histories
    left out); None for a bundle of one model."""
    auto = training.get("auto")
    if not auto:
        return None
    members = [{k: v for k, v in m.items() if k not in ("history", "config")} for m in auto.get("members", [])]
    return {**{k: v for k, v in auto.items() if k != "members"}, "members": members}


def choice_lines(report: dict) -> list[str]:
    """The validation table of ``--model auto`` as Markdown lines (empty for one model)."""
    c = report.get("model_choice")
    if not c:
        return []
    lines = [
        "",
        f"Model chosen by `--model auto` on the validation split (rule `{c['rule']}`): **{c['chosen']}**"
        + (f"; {c['note']}" if c.get("note") else "")
        + ".",
        "",
        "| candidate | validation OA % | AA % | kappa % | weights | tau |",
        "|---|---|---|---|---|---|",
    ]
    for r in c.get("validation", []):
        w = ", ".join(f"{v:.2f}" for v in r["weights"])
        lines.append(f"| {r['candidate']} | {_pct(r['oa'])} | {_pct(r['aa'])} | {_pct(r['kappa'])} | {w} | {r['tau']:g} |")
    return lines


def validation_rule(split: dict) -> str:
    """How the validation pixels (kept epoch, temperature, patch search) were drawn, in words; files
    prepared before ``--val-split`` drew them at random (group splits: by whole groups)."""
    if split.get("protocol") == "group":
        return "whole groups"
    if "val_split" in split:
        return split.get("val_rule") or split["val_split"]
    return "random pixels of each class (prepared before --val-split)"


def _split_line(report: dict) -> str:
    split = report.get("split", {})
    line = split.get("description") or f"{split.get('protocol', '?')} split, seed {split.get('seed', '?')}"
    if "val_split" not in split and split.get("protocol") not in (None, "group"):
        line += "; validation: random pixels (prepared before --val-split)"
    return line


def _pct(v: float | None, ci: float | None = None) -> str:
    """``v`` in percent with 2 decimals (and ``± ci`` when given), ``-`` when undefined."""
    if v is None:
        return "-"
    return f"{100 * v:.2f}" + ("" if ci is None else f" ± {100 * ci:.2f}")


def _class_rows(report: dict) -> list[tuple[str, ...]]:
    """Per class: name, train px, test px, accuracy (= PA) ± 95 % CI, UA ± 95 % CI, F1 (all as text, in percent)."""
    table = list((report.get("classes") or {}).values())
    rows = []
    for i, (name, ntr, sup, acc) in enumerate(
        zip(report["class_names"], report["train_pixels_per_class"], report["support"], report["per_class"])
    ):
        c = table[i] if i < len(table) else {}
        rows.append(
            (
                str(name),
                str(ntr),
                str(sup),
                _pct(acc, c.get("producers_accuracy_ci95")),
                _pct(c.get("users_accuracy"), c.get("users_accuracy_ci95")),
                _pct(c.get("f1")),
            )
        )
    return rows


def calibration_line(report: dict) -> str:
    """One sentence on the confidences: ECE (15 bins) before and after the temperature, or why there is none."""
    cal = report.get("calibration")
    if not cal:
        return ""
    before = f"expected calibration error ({cal['bins']} bins) on the test split {cal['ece_before']:.4f}"
    if cal.get("temperature") is None:
        return f"Confidence calibration skipped ({cal.get('skipped', 'no temperature')}); {before} (uncalibrated)."
    return (
        f"Temperature {cal['temperature']:.3f} (fitted on the validation split): {before} before, {cal['ece_after']:.4f} after."
    )


CLASS_COLUMNS = ("class", "train px", "test px", "PA (accuracy) % ± 95% CI", "UA % ± 95% CI", "F1 %")


def report_markdown(report: dict) -> str:
    """The report as a Markdown table, with the protocol named above it."""
    lines = [
        f"**{report['model_name']}** on the test split ({report['test_pixels']} px). Split: {_split_line(report)}; "
        f"preprocessing fitted on {fit_on_words(report.get('fit_on'))}{' (PCA whitened)' if report.get('whiten') else ''}{' (PCA of raw values)' if report.get('standardize') is False else ''}; model selection: {report.get('selection')} "
        f"(epoch {report.get('best_epoch')}{', EMA of the weights, decay ' + str(report['ema']) if report.get('ema') else ''}); "
        f"model seed {report.get('model_seed')}.",
        "",
        "| " + " | ".join(CLASS_COLUMNS) + " |",
        "|---" * len(CLASS_COLUMNS) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in _class_rows(report)]
    for k, label in (("oa", "OA"), ("aa", "AA"), ("kappa", "kappa")):
        lines.append(f"| **{label}** | | | {100 * report[k]:.2f} | | |")
    lines += ["", "PA = producer's accuracy (recall), UA = user's accuracy (precision); intervals: 1.96 standard errors."]
    if calibration_line(report):
        lines += ["", calibration_line(report)]
    lines += _group_lines(report, markdown=True)
    lines += choice_lines(report)
    lines += _matrix_markdown(report)
    return "\n".join(lines) + "\n"


def _group_lines(report: dict, markdown: bool = False) -> list[str]:
    """Per held-out group (tile): pixels, OA, AA, kappa."""
    rows = report.get("per_group") or []
    if not rows:
        return []
    head = f"Held-out groups ({len(rows)}): {', '.join(r['group'] for r in rows)}"
    if not markdown:
        return [head] + [
            f"  {r['group']}: {r['pixels']} px, OA {100 * r['oa']:.2f}, AA {100 * r['aa']:.2f}, kappa {100 * r['kappa']:.2f}"
            for r in rows
        ]
    out = ["", head + ".", "", "| group | test px | OA % | AA % | kappa % |", "|---|---|---|---|---|"]
    return out + [
        f"| {r['group']} | {r['pixels']} | {100 * r['oa']:.2f} | {100 * r['aa']:.2f} | {100 * r['kappa']:.2f} |" for r in rows
    ]


def _matrix_markdown(report: dict) -> list[str]:
    """The confusion matrix (rows = true class, columns = predicted class) as a Markdown table."""
    names = list(report.get("class_names") or [])
    m = report.get("confusion_matrix") or []
    if not m or len(names) != len(m):
        return []
    out = ["", "Confusion matrix (rows = true class, columns = predicted class):", ""]
    out += ["| true \\ predicted | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    return out + [f"| {n} | " + " | ".join(str(int(v)) for v in row) + " |" for n, row in zip(names, m)]


def report_csv(report: dict) -> str:
    """One row per class plus OA/AA/kappa rows; then the confusion matrix (rows = true class)."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf)
    extra = ("producers_accuracy_ci95", "users_accuracy", "users_accuracy_ci95", "f1")
    w.writerow(["class", "train_pixels", "test_pixels", "accuracy", *extra])
    table = list((report.get("classes") or {}).values())
    for i, (name, ntr, sup, acc) in enumerate(
        zip(report["class_names"], report["train_pixels_per_class"], report["support"], report["per_class"])
    ):
        c = table[i] if i < len(table) else {}
        more = ["" if c.get(k) is None else f"{c[k]:.6f}" for k in extra]
        w.writerow([name, ntr, sup, "" if acc is None else f"{acc:.6f}", *more])
    for k in ("oa", "aa", "kappa"):
        w.writerow([k.upper() if k != "kappa" else "kappa", "", "", f"{report[k]:.6f}"])
    w.writerow([])
    w.writerow(["true \\ predicted", *report["class_names"]])
    for name, row in zip(report["class_names"], report["confusion_matrix"]):
        w.writerow([name, *row])
    return buf.getvalue()


def declare_outputs(report_prefix: Path | None, plot: Path | None) -> OutputSet:
    """What ``evaluate`` writes: ``--report PREFIX`` (``.json``, ``.csv``, ``.md``), ``--plot`` and the reliability
    diagram beside it."""
    plots = OutputSet(Declared("plot", plot), Declared("reliability", reliability_path(plot))) if plot else OutputSet()
    return report_outputs(report_prefix) + plots


def write_report_files(report: dict, outputs: OutputSet, overwrite: bool) -> list[Path]:
    """``PREFIX.json``, ``PREFIX.csv``, ``PREFIX.md`` (each written atomically)."""
    import json

    from hsicls.io.disk import json_safe

    texts = {"json": json.dumps(json_safe(report), indent=2), "csv": report_csv(report), "md": report_markdown(report)}
    return write_texts(outputs, texts, overwrite)


def reliability_path(plot: Path) -> Path:
    """Where ``--plot cm.png`` puts the reliability diagram: ``cm_reliability.png`` beside it."""
    return plot.with_name(plot.stem + "_reliability.png")


def plot_reliability(report: dict, path: Path, overwrite: bool) -> None:
    """The reliability diagram of the test split (before and after the temperature) as a PNG."""
    from hsicls.engine.calibration import plot_reliability as plot

    cal = report["calibration"]
    how = "uncalibrated (no temperature)" if cal.get("temperature") is None else "before and after temperature scaling"
    plot(cal, path, overwrite, title=f"{report['model_name']}, test split ({report['test_pixels']} px):\nreliability {how}")


def plot_confusion(report: dict, path: Path, overwrite: bool) -> None:
    """Row-normalised confusion matrix as a PNG (matplotlib, headless)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hsicls.io.atomic import atomic_output

    cm = np.array(report["confusion_matrix"], float)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    k = len(report["class_names"])
    size = max(5.0, 0.45 * k + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), report["class_names"], rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(k), report["class_names"], fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if k <= 20:
        for i in range(k):
            for j in range(k):
                if cm[i, j]:
                    ax.text(
                        j,
                        i,
                        f"{int(cm[i, j])}",
                        ha="center",
                        va="center",
                        fontsize=6,
                        color="white" if norm[i, j] > 0.5 else "black",
                    )
    ax.set_title(
        f"{report['model_name']}: OA {100 * report['oa']:.2f} %, kappa {100 * report['kappa']:.2f}\n{_split_line(report)}",
        fontsize=8,
    )
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    with atomic_output(path, overwrite) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def render_report(report: dict) -> None:
    """The metrics as a rich table on stderr."""
    from rich.table import Table

    table = Table(
        title=f"{report['model_name']} on the test split ({report['test_pixels']} px; {_split_line(report)}; "
        f"preprocessing fitted on {fit_on_words(report.get('fit_on'))}; selection: {report.get('selection')})"
    )
    for i, col in enumerate(CLASS_COLUMNS):
        table.add_column(col, justify="left" if i == 0 else "right")
    for row in _class_rows(report):
        table.add_row(*row)
    table.add_section()
    table.add_row("OA", "", "", f"{100 * report['oa']:.2f}", "", "")
    table.add_row("AA", "", "", f"{100 * report['aa']:.2f}", "", "")
    table.add_row("kappa", "", "", f"{100 * report['kappa']:.2f}", "", "")
    console.show(table)
    if calibration_line(report):
        console.info(calibration_line(report))
    for line in _group_lines(report):
        console.info(line)
    c = report.get("model_choice")
    if c:
        console.info(f"--model auto chose {c['chosen']} on the validation split (rule {c['rule']})")
        for r in c.get("validation", []):
            console.info(f"  validation {r['candidate']}: OA {_pct(r['oa'])}, AA {_pct(r['aa'])}, kappa {_pct(r['kappa'])}")
