"""The model card (Markdown): what the model is for, the data it saw, its figures and the verdict.

The verdict (what to deploy) is made on the validation split by `modelshop.train.ensemble.choose`; the
card shows it, the evaluation figures of the deployed model beside those of every model the run
trained (`candidates`), and the validation figures the choice rests on.
"""

from __future__ import annotations

RECOMMEND_MARGIN = 0.01  # a costlier model must beat a cheaper one by a full point of macro-F1 to be worth it


def data_context(profile: dict | None) -> str:
    """A sentence on small or imbalanced training data, where a transformer often does not pay; or ''."""
    if not profile:
        return ""
    rows, ratio = profile.get("rows", 0), profile.get("imbalance_ratio") or 1
    if rows >= 1000 and ratio < 3:
        return ""
    what = " and ".join(w for w, on in (("small", rows < 1000), ("imbalanced", ratio >= 3)) if on)
    return (f" The training data is {what} ({rows} rows, imbalance {ratio:.1f}:1), where a transformer often "
            "does not pay.")


def _fmt(x) -> str:
    return f"{x:.4f}" if isinstance(x, float) else str(x)


def _others(family: str, candidates: dict | None, baseline: dict | None) -> dict[str, dict]:
    """The evaluation figures of the models the run trained besides the one deployed, by name."""
    if candidates:
        return {name: m for name, m in candidates.items() if name != family and m}
    return {"tfidf": baseline} if baseline else {}


def _column(name: str) -> str:
    return "tfidf baseline" if name == "tfidf" else name


def model_card(*, name: str, base_model: str, family: str, labels: list[str], multi_label: bool,
               metrics: dict, baseline: dict | None, recommended: str, reason: str, profile: dict | None,
               config: dict, data: dict, fit: dict | None, charts: dict[str, str],
               candidates: dict | None = None, validation: dict | None = None,
               combination: dict | None = None) -> str:
    """The card. `candidates`: each trained model's evaluation figures by name (transformer, tfidf,
    ensemble); `validation`: the figures the choice was made on (`Choice.validation`); `combination`:
    the deployed ensemble's weights and languages."""
    others = _others(family, candidates, baseline)
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
    verdict = (f"**Deploy: {recommended}.**" if recommended == family
               else f"**Recommended: {recommended}; this version serves: {family}.**")
    lines += ["## Recommendation", "", f"{verdict} {reason}", ""]
    if combination:
        lines += _combination(combination)
    head = "| metric | this model |" + "".join(f" {_column(o)} |" for o in others) if others else \
        "| metric | this model | tfidf baseline |"
    lines += ["## Figures (evaluation set)", "", head, "|" + " --- |" * head.count(" |")]
    for key in ("accuracy", "macro_f1", "micro_f1", "weighted_f1", "ece"):
        rest = "".join(f" {_fmt(m.get(key))} |" for m in others.values()) if others else " — |"
        lines.append(f"| {key} | {_fmt(metrics.get(key))} |{rest}")
    lines += ["", "### Per class", "", "| label | precision | recall | F1 | support |",
              "| --- | --- | --- | --- | --- |"]
    for lab, m in metrics.get("per_class", {}).items():
        lines.append(f"| {lab} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m['support']} |")
    lines.append("")
    if metrics.get("per_language"):
        beside = {o: m["per_language"] for o, m in others.items() if m.get("per_language")}
        head = "| language | rows | accuracy | macro-F1 |" + "".join(f" {o} macro-F1 |" for o in beside)
        lines += ["### Per language", "", head, "|" + " --- |" * head.count(" |")]
        for code, m in metrics["per_language"].items():
            row = f"| {code} | {m['n']} | {m['accuracy']:.3f} | {m['macro_f1']:.3f} |"
            for per in beside.values():
                b = per.get(code, {}).get("macro_f1")
                row += f" {f'{b:.3f}' if b is not None else '—'} |"
            lines.append(row)
        lines.append("")
    if validation and validation.get("rows"):
        lines += _validation(validation)
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


def _combination(combination: dict) -> list[str]:
    weights = combination["weights"]
    base_model = (combination.get("parts") or {}).get("transformer", "?")
    per = weights.get("per_language") or {}
    lines = ["## Combination", "",
             f"This version serves two models as one: the fine-tuned transformer (`{base_model}`, in `transformer/`) "
             "and the tfidf model (in `tfidf/`). The probability of each label is w · p(transformer) + (1 − w) · "
             "p(tfidf), with w, the transformer's weight, chosen per language on the validation split:", "",
             "| language | transformer weight |", "| --- | --- |"]
    lines += [f"| {code} | {w:.1f} |" for code, w in per.items()]
    others = "any other language" if per else "every text"
    lines += [f"| {others} | {weights['default']:.1f} |", ""]
    if per:
        lines += [f"The language of each text is told among {', '.join(combination.get('languages') or per)} "
                  "(lingua, one text at a time).", ""]
    return lines


def _validation(v: dict) -> list[str]:
    """The validation figures the choice was made on."""
    names = [n for n in ("transformer", "tfidf", "ensemble") if n in v]
    head = "| rows | " + " | ".join("combination (cross-validated)" if n == "ensemble" else n for n in names) + " |"
    lines = ["## Validation (what the choice rests on)", "",
             "Macro-F1 on the validation split, held out of the training rows; the evaluation set played no part.",
             "", "| | " + head[2:], "|" + " --- |" * (head.count(" |") + 1)]
    lines.append(f"| all | {v['rows']} | " + " | ".join(f"{v[n]:.3f}" for n in names) + " |")
    for code, m in (v.get("per_language") or {}).items():
        lines.append(f"| {code} | {m['n']} | " + " | ".join(f"{m[n]:.3f}" if n in m else "—" for n in names) + " |")
    lines.append("")
    return lines


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
