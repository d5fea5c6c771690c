"""The model card (Markdown): what the model is for, the data it saw, its figures and the verdict."""

from __future__ import annotations

RECOMMEND_MARGIN = 0.01  # a transformer must beat tfidf by a full point of macro-F1 to be worth its cost


def recommend(transformer: dict | None, baseline: dict | None, profile: dict | None = None) -> tuple[str, str]:
    """('transformer' | 'tfidf', the reason in one or two sentences)."""
    if transformer is None:
        return "tfidf", "Only the tfidf model was trained."
    if baseline is None:
        return "transformer", "No tfidf baseline was fitted for comparison."
    t, b = transformer["macro_f1"], baseline["macro_f1"]
    delta = t - b
    context = ""
    if profile:
        rows, ratio = profile.get("rows", 0), profile.get("imbalance_ratio") or 1
        if rows < 1000 or ratio >= 3:
            context = (f" The training data is {'small' if rows < 1000 else ''}"
                       f"{' and ' if rows < 1000 and ratio >= 3 else ''}{'imbalanced' if ratio >= 3 else ''}"
                       f" ({rows} rows, imbalance {ratio:.1f}:1), where a transformer often does not pay.")
    if delta >= RECOMMEND_MARGIN:
        return "transformer", (f"The transformer beats tfidf by {delta * 100:.1f} points of macro-F1 "
                               f"({t:.3f} vs {b:.3f}), worth its higher serving cost.{context}")
    if delta > -RECOMMEND_MARGIN:
        return "tfidf", (f"The transformer is within {RECOMMEND_MARGIN * 100:.0f} point of tfidf "
                         f"({t:.3f} vs {b:.3f} macro-F1); tfidf is far cheaper and faster to serve.{context}")
    return "tfidf", (f"tfidf beats the transformer by {-delta * 100:.1f} points of macro-F1 "
                     f"({b:.3f} vs {t:.3f}) and is far cheaper to serve.{context}")


def _fmt(x) -> str:
    return f"{x:.4f}" if isinstance(x, float) else str(x)


def model_card(*, name: str, base_model: str, family: str, labels: list[str], multi_label: bool,
               metrics: dict, baseline: dict | None, recommended: str, reason: str, profile: dict | None,
               config: dict, data: dict, fit: dict | None, charts: dict[str, str]) -> str:
    lines = [f"# Model card: {name}", ""]
    lines += [f"- **Family**: {family} (base: `{base_model}`)",
              f"- **Task**: {'multi-label' if multi_label else 'single-label'} text classification, "
              f"{len(labels)} labels: {', '.join(labels)}",
              f"- **Training data**: `{data.get('train')}` (sha256 `{str(data.get('train_sha256'))[:16]}…`, "
              f"{data.get('train_rows')} rows after the validation split)",
              f"- **Evaluation data**: `{data.get('eval')}` ({metrics.get('n')} rows)", ""]
    lines += ["## Intended use", "",
              f"Classifying short texts into the labels above, in the language(s) of the training data. "
              "Not for decisions about people without human review; scores are probabilities "
              f"(expected calibration error {metrics.get('ece')}), not guarantees.", ""]
    lines += ["## Recommendation", "", f"**Deploy: {recommended}.** {reason}", ""]
    lines += ["## Figures (evaluation set)", "", "| metric | this model | tfidf baseline |", "| --- | --- | --- |"]
    for key in ("accuracy", "macro_f1", "micro_f1", "weighted_f1", "ece"):
        lines.append(f"| {key} | {_fmt(metrics.get(key))} | {_fmt(baseline.get(key)) if baseline else '—'} |")
    lines += ["", "### Per class", "", "| label | precision | recall | F1 | support |",
              "| --- | --- | --- | --- | --- |"]
    for lab, m in metrics.get("per_class", {}).items():
        lines.append(f"| {lab} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m['support']} |")
    lines.append("")
    if metrics.get("per_language"):
        base = (baseline or {}).get("per_language")  # None when this model is the tfidf one
        head = "| language | rows | accuracy | macro-F1 |" + (" tfidf macro-F1 |" if base else "")
        lines += ["### Per language", "", head, "|" + " --- |" * head.count(" |")]
        for code, m in metrics["per_language"].items():
            row = f"| {code} | {m['n']} | {m['accuracy']:.3f} | {m['macro_f1']:.3f} |"
            if base:
                b = base.get(code, {}).get("macro_f1")
                row += f" {f'{b:.3f}' if b is not None else '—'} |"
            lines.append(row)
        lines.append("")
    for title, file in charts.items():
        lines += [f"![{title}]({file})", ""]
    if profile:
        lines += ["## Data profile", "",
                  f"- rows: {profile.get('rows')}; labels: {profile.get('labels')}",
                  f"- imbalance ratio: {profile.get('imbalance_ratio')}",
                  f"- tokens per text: p50 {profile.get('length', {}).get('p50')}, "
                  f"p95 {profile.get('length', {}).get('p95')}, max {profile.get('length', {}).get('max')}; "
                  f"recommended max_length {profile.get('recommended_max_length')}",
                  f"- exact duplicates: {_count(profile.get('exact_duplicates'))}; near duplicates: "
                  f"{_count(profile.get('near_duplicates'))}; "
                  f"conflicting labels: {_count(profile.get('conflicting_labels'))}",
                  f"- train/eval leakage: {_count((profile.get('leakage') or {}).get('exact'))} exact",
                  f"- PII found: {profile.get('pii') or 'none'}",
                  f"- languages: {_languages(profile)}", ""]
        for w in profile.get("warnings", []):
            lines.append(f"- ⚠ {w}")
        lines.append("")
    if fit:
        lines += ["## Training", "",
                  f"- best epoch {fit.get('best_epoch')} (validation macro-F1 {fit.get('best_val_macro_f1')}), "
                  f"{fit.get('samples_per_s')} samples/s, {fit.get('train_seconds')} s",
                  ""]
    lines += ["## Options", "", "```", *(f"{k}: {v}" for k, v in config.items() if k != "extra"), "```", ""]
    lines += ["## Lineage", "", f"- parent version: {data.get('parent') or 'none'}",
              f"- training data sha256: `{data.get('train_sha256')}`",
              f"- evaluation data sha256: `{data.get('eval_sha256')}`", ""]
    return "\n".join(lines)


def _languages(profile: dict) -> str:
    langs = profile.get("languages") or {}
    shown = ", ".join(f"{code} {n} ({langs['shares'][code]:.0%})" for code, n in (langs.get("counts") or {}).items())
    coverage = profile.get("tokenizer_coverage")
    if shown and coverage:
        shown += f"; [UNK] share under {coverage['base_model']}: " + ", ".join(
            f"{code} {c['unk_rate']:.1%}" for code, c in coverage["per_language"].items())
    return shown or "not detected"


def _count(v) -> object:
    if isinstance(v, dict):
        return v.get("count", v.get("pairs", "?"))
    return v if v is not None else 0
