"""Build, measure and register compressed versions of a registered transformer model.

    int8       fp32 weights stored as they are, format "int8": `torch.ao.quantization.quantize_dynamic`
               on every Linear when loaded (the load is fast and the file stays portable)
    onnx       `torch.onnx.export(..., dynamo=False)`, opset 17, dynamic batch and sequence axes,
               run by ONNX Runtime
    onnx-int8  the onnx graph after `onnxruntime.quantization.quantize_dynamic` (int8 weights)
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

from modelshop.data import load_dataset
from modelshop.errors import ValidationError
from modelshop.inference import META_FILE, load_predictor, read_meta
from modelshop.optimize.measure import check_labels, compare, measure
from modelshop.registry import Registry
from modelshop.settings import Settings, get_settings

VARIANTS = ("int8", "onnx", "onnx-int8")
ONNX_OPSET = 17
# Report files of the source describe the source's figures, not the compressed version's.
SOURCE_REPORTS = {"card.md", "metrics.json", "history.json", "profile.json", "confusion_matrix.json",
                  "optimize.json"}


def optimize(ref: str, *, data: Path | None, variants: list[str], text_col: str | None = None,
             label_col: str | None = None, limit: int | None = None, settings: Settings | None = None,
             say=lambda _msg: None) -> dict:
    """Make each of `variants` from version `ref`, measure it beside the source on `data`, register it."""
    settings = settings or get_settings()
    if not variants:
        raise ValidationError(f"say what to make: --int8, --onnx or --onnx-int8 (any of {', '.join(VARIANTS)})")
    for v in variants:
        if v not in VARIANTS:
            raise ValidationError(f'unknown compression "{v}"; use one of {", ".join(VARIANTS)}')
    if data is None:
        raise ValidationError("--data is required: a labelled eval file to measure speed and accuracy on "
                              "(the compressed versions are compared with the source on it)")
    registry = Registry.from_settings(settings)
    row = registry.get(ref)
    if row.family != "transformer" or row.format != "pytorch":
        raise ValidationError(f"{row.ref} is {row.family}/{row.format}; only fp32 PyTorch transformer versions "
                              "can be quantised or exported (pick the version they came from)")
    ds = load_dataset(data, text_col, label_col, limit=limit)
    source_dir = registry.path(row)
    threads = settings.torch_threads
    source = load_predictor(source_dir, threads=threads)
    check_labels(source, ds, row.ref)
    say(f"measuring {row.ref} on {len(ds)} texts from {data}")
    source_figures = measure(source, ds)
    del source
    made = []
    for variant in variants:
        build = registry.incoming_dir()
        try:
            say(f"building {variant} from {row.ref}")
            _build(variant, source_dir, build)
            figures = measure(load_predictor(build, threads=threads), ds)
            report = {"variant": variant, "source": row.ref, "eval": str(data), **figures,
                      **compare(figures, source_figures), "source_figures": source_figures}
            (build / "optimize.json").write_text(json.dumps(report, indent=1))
            (build / "card.md").write_text(_card(row.ref, variant, report))
            meta = read_meta(build)
            new = registry.register(
                row.name, build, family="transformer", format=meta["format"], base_model=row.base_model,
                labels=list(row.labels), multi_label=row.multi_label, data_sha256=row.data_sha256,
                eval_sha256=ds.fingerprint(), parent_id=row.id, stage="staging",
                metrics={"accuracy": figures["accuracy"], "macro_f1": figures["macro_f1"],
                         "texts_per_s": figures["texts_per_s"], "variant": variant,
                         **compare(figures, source_figures), "source_figures": source_figures})
        finally:
            if build.exists():
                shutil.rmtree(build, ignore_errors=True)
        say(f"registered {new.ref} ({variant}, staging): {figures['texts_per_s']} texts/s "
            f"(×{report['speedup']}), macro-F1 {figures['macro_f1']} ({-report['macro_f1_points_lost']:+} points)")
        made.append({"name": new.name, "version": new.version, "stage": new.stage, **report})
    return {"source": {"ref": row.ref, **source_figures}, "versions": made}


def _build(variant: str, source_dir: Path, build: Path) -> None:
    meta = read_meta(source_dir)
    if variant == "int8":
        for f in source_dir.iterdir():
            if f.is_file() and f.name not in SOURCE_REPORTS and f.suffix != ".png":
                shutil.copy2(f, build / f.name)
        meta.update(format="int8", quantization="dynamic int8 (torch, Linear layers, at load)")
    else:
        export_onnx(source_dir, build)
        meta.update(format="onnx", onnx_file="model.onnx", quantization=None)
        if variant == "onnx-int8":
            from onnxruntime.quantization import QuantType, quantize_dynamic

            fp32 = build / "model.fp32.onnx"
            (build / "model.onnx").rename(fp32)
            quantize_dynamic(str(fp32), str(build / "model.onnx"), weight_type=QuantType.QInt8)
            fp32.unlink()
            meta["quantization"] = "dynamic int8 (onnxruntime)"
    meta["compressed_from"] = str(source_dir.name)
    (build / META_FILE).write_text(json.dumps(meta, ensure_ascii=False, indent=1))


def export_onnx(source_dir: Path, build: Path) -> Path:
    """model.onnx with dynamic batch and sequence axes, plus the tokenizer and config beside it."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source_dir)
    model = AutoModelForSequenceClassification.from_pretrained(source_dir).eval()
    model.config.return_dict = False  # a plain tuple out: the legacy exporter names it "logits"
    sample = tokenizer(["an example", "a somewhat longer example text"], padding=True, return_tensors="pt")
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in sample]
    target = build / "model.onnx"
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on Python-side shape checks are expected here
        torch.onnx.export(
            model, (sample["input_ids"], {n: sample[n] for n in names[1:]}), str(target),
            input_names=names, output_names=["logits"], opset_version=ONNX_OPSET, dynamo=False,
            dynamic_axes={**{n: {0: "batch", 1: "sequence"} for n in names}, "logits": {0: "batch"}})
    tokenizer.save_pretrained(build)
    model.config.save_pretrained(build)
    return target


def _card(source_ref: str, variant: str, r: dict) -> str:
    return (f"# {variant} form of {source_ref}\n\n"
            f"Made by `modelshop optimize`; measured on {r['n']} texts of `{r['eval']}` "
            f"(length-sorted batches of 64, one process).\n\n"
            "| form | texts/s | accuracy | macro-F1 |\n| --- | --- | --- | --- |\n"
            f"| source {source_ref} | {r['source_figures']['texts_per_s']} | {r['source_figures']['accuracy']} | "
            f"{r['source_figures']['macro_f1']} |\n"
            f"| {variant} | {r['texts_per_s']} | {r['accuracy']} | {r['macro_f1']} |\n\n"
            f"Speed-up ×{r['speedup']}; macro-F1 points lost: {r['macro_f1_points_lost']}.\n")
