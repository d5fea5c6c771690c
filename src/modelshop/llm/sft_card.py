"""The model card of a fine-tuned generative version (Markdown), and its training-curves chart.

The card says what the model was made from (base, data and its hash, parent), whether fine-tuning
paid (the version beside its base on the same evaluation rows), how it was trained, how it serves
(merged, with the decode speeds measured either way), sample answers, and what the data held.
The storefront serves it at /store/NAME/card.md and the chart beside it.
"""

from __future__ import annotations

from pathlib import Path

SNIPPET = 300


def finetune_card(*, name: str, base: str, meta: dict, scores: dict, base_scores: dict, paid: bool | None,
                  reason: str, profile: dict, fit: dict, lora: dict, serving: dict, data: dict, config: dict,
                  samples: list[dict], charts: dict[str, str]) -> str:
    lines = [f"# Model card: {name}", "",
             f"A generative model fine-tuned from `{base}` with LoRA on {data['train_rows']} conversations, "
             "served through the OpenAI-compatible API (`/v1/chat/completions`).", "",
             f"- **Base model**: `{base}` ({meta.get('architecture')}, {meta.get('parameters', 0):,} parameters, "
             f"context {meta.get('context_length')} tokens)",
             f"- **Training data**: `{Path(str(data['train'])).name}` (sha256 `{data['data_sha256'][:16]}…`; "
             f"{data['train_rows']} for training, {data['validation_rows']} for validation)",
             f"- **Evaluation data**: {_eval_name(data['eval'])} ({data['eval_rows']} rows)", ""]
    lines += ["## Intended use", "",
              "Answering questions like those of the training data, in its language and style. Answers are "
              "generated text: they can be wrong or made up, so keep a person in the loop for anything that "
              "matters, and keep the hand-off to one.", ""]
    lines += ["## Did fine-tuning pay?", "", f"**{_yes_no(paid)}** {reason}", "",
              "| metric | this model | base model |", "| --- | --- | --- |",
              f"| perplexity of the reference answers (lower is better) | {_f(scores['perplexity'], 2)} | "
              f"{_f(base_scores['perplexity'], 2)} |",
              f"| token-F1 of the greedy answers | {_f(scores['token_f1'])} | {_f(base_scores['token_f1'])} |",
              f"| exact match | {_f(scores['exact_match'])} | {_f(base_scores['exact_match'])} |",
              f"| words per greedy answer | {_words(scores)} | {_words(base_scores)} |", "",
              f"Perplexity over {scores['answer_tokens']:,} answer tokens of {scores['rows']} rows; greedy answers on "
              f"{scores['answered']} rows (at most {scores['max_new_tokens']} new tokens).", ""]
    if samples:
        lines += ["## Sample answers", ""]
        for i, s in enumerate(samples, start=1):
            lines += [f"**{i}. {_one_line(s['question'])}**", "",
                      f"- reference: {_one_line(s['reference'])}",
                      f"- base model: {_one_line(s['base']) or '(nothing)'}",
                      f"- this model: {_one_line(s['fine_tuned']) or '(nothing)'}", ""]
    lines += ["## Training", "",
              f"- LoRA rank {lora['rank']}, alpha {lora['alpha']:g}, dropout {lora['dropout']:g}, on "
              f"{_modules(lora['target_modules'])}: {lora['trainable_parameters']:,} trainable parameters",
              f"- {fit['epochs_run']} epoch(s), {fit['steps']} steps; best epoch {fit['best_epoch']}"
              + (f" (validation loss {fit['best_val_loss']:.4f})" if fit.get("best_val_loss") is not None else "")
              + ("; stopped early" if fit.get("stopped_early") else ""),
              f"- {fit['samples_per_s']} conversations/s ({fit['tokens_per_s']} tokens/s) on {fit['device']}, "
              f"{fit['train_seconds']} s of training, peak memory {fit['peak_memory_mb']:,.0f} MB",
              f"- loss on the answer tokens only, max_length {data['max_length']} tokens, "
              f"{'length-grouped batches' if config.get('group_by_length') else 'shuffled batches'} of "
              f"{config.get('batch_size')}, seed {config.get('seed')}", ""]
    for title, file in charts.items():
        lines += [f"![{title}]({file})", ""]
    lines += ["## Serving", "", _serving_line(serving), ""]
    lines += ["## Data profile", "", *_profile_lines(profile), ""]
    lines += ["## Options", "", "```", *(f"{k}: {v}" for k, v in config.items() if k != "extra"), "```", ""]
    lines += ["## Lineage", "", f"- base model: `{base}`" + (" (its parent version in the registry)" if ":" in base
                                                              else ""),
              f"- training data sha256: `{data['data_sha256']}`", f"- evaluation data sha256: `{data['eval_sha256']}`",
              ""]
    return "\n".join(lines)


def _serving_line(s: dict) -> str:
    merged, adapter = s.get("merged_tokens_per_s"), s.get("adapter_tokens_per_s")
    if not merged or not adapter:
        return "The adapter is merged into the weights; decode speed was not measured."
    faster = "faster" if merged >= adapter else "slower"
    same = ("the same greedy tokens either way" if s.get("same_greedy_tokens")
            else "greedy tokens that differ slightly (floating-point order)")
    return (f"The adapter is merged into the weights, which decodes {faster}: {merged} tokens/s merged against "
            f"{adapter} tokens/s with the adapter on the base ({s['tokens']} greedy tokens after each of "
            f"{s['prompts']} prompts, one at a time), with {same}. The adapter alone is kept in `adapter/`.")


def _profile_lines(p: dict) -> list[str]:
    t = p["tokens"]
    lines = [f"- rows: {p['rows']} ({p['shape']}); {p['turns_mean']} messages per conversation",
             f"- tokens: prompt p50 {t['prompt']['p50']} / max {t['prompt']['max']}; answer p50 {t['answer']['p50']} / "
             f"p95 {t['answer']['p95']} / max {t['answer']['max']}; whole conversation max {t['total']['max']}",
             f"- exact duplicates: {p['exact_duplicates']['count']}; near-duplicate questions: "
             f"{p['near_duplicate_questions']['count']}; questions with different answers: "
             f"{p['conflicting_answers']['count']}",
             f"- personal data found: {_pii(p)}"]
    if "leakage" in p:
        lines.append(f"- evaluation questions also in training: {p['leakage']['rows']} of {p['leakage']['eval_rows']}")
    lines += [f"- ⚠ {w}" for w in p.get("warnings", [])]
    return lines


def _pii(p: dict) -> str:
    if not p["pii"]:
        return "none"
    found = ", ".join(f"{k} {v}" for k, v in p["pii"].items())
    return f"{found} in {p['pii_rows']} row(s), " + ("redacted before training" if p["pii_redacted"] else "kept")


def training_curves_png(history: dict, path: Path) -> Path | None:
    """Training loss per step and validation loss per epoch, or None when there is nothing to draw."""
    losses = history.get("loss") or []
    if len(losses) < 2:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=100)
    ax.plot([x["epoch"] for x in losses], [x["loss"] for x in losses], label="training loss (answer tokens)",
            linewidth=1)
    val = [(e["epoch"], e["val_loss"]) for e in history.get("epochs", []) if e.get("val_loss") is not None]
    if val:
        ax.plot(*zip(*val), marker="o", label="validation loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross-entropy")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _eval_name(source: str) -> str:
    return f"`{Path(source.split(' (')[0]).name}`" + (f" ({source.split(' (', 1)[1]}" if " (" in source else "")


def _yes_no(paid: bool | None) -> str:
    return {True: "Yes.", False: "No.", None: "Unknown."}[paid]


def _f(x, digits: int = 4) -> str:
    return f"{x:.{digits}f}" if isinstance(x, int | float) else "—"


def _words(scores: dict) -> str:
    answers = scores.get("answers") or []
    if not answers:
        return "—"
    return f"{sum(len(a['answer'].split()) for a in answers) / len(answers):.1f}"


def _modules(m) -> str:
    return "every linear layer" if m == "all-linear" else ", ".join(m) if isinstance(m, list) else str(m)


def _one_line(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= SNIPPET else text[:SNIPPET - 1] + "…"
