"""`modelshop llm add | list | train | eval`: generative models (local causal LMs) in the registry, fine-tuned
with LoRA on a company's own conversations and judged beside their base."""

from __future__ import annotations

from pathlib import Path

import typer

from modelshop.cli.output import emit_json

app = typer.Typer(no_args_is_help=True)


@app.command()
def add(name: str = typer.Option(..., "--name", help="registered model name"),
        base_model: str = typer.Option(None, "--base-model", help="smollm2 | a .gguf file | a Hugging Face folder "
                                                                  "| a hub id in the local cache"),
        upstream: str = typer.Option(None, "--upstream", help="an OpenAI-compatible provider's base URL (or your "
                                                              "own vLLM / llama.cpp server's), e.g. https://api.x/v1"),
        upstream_model: str = typer.Option(None, "--upstream-model", help="the provider's model id"),
        upstream_key_env: str = typer.Option(None, "--upstream-key-env", help="environment variable holding the "
                                                                               "provider's key (read at call time)"),
        cost_input: str = typer.Option("0", "--cost-input", help="what the provider charges per million input "
                                                                 "tokens"),
        cost_output: str = typer.Option("0", "--cost-output", help="... per million output tokens"),
        fallback: str = typer.Option(None, "--fallback", help="models to try in order when this one fails: "
                                                              "NAME[,NAME…]"),
        timeout: float = typer.Option(60.0, "--timeout", help="seconds to wait for the provider"),
        context_length: int = typer.Option(None, "--context-length", help="the upstream model's context, "
                                                                          "for the model list"),
        tokenizer: str = typer.Option(None, "--tokenizer", help="a registered generative model or folder whose "
                                                                "tokenizer counts this model's tokens locally"),
        json_out: bool = typer.Option(False, "--json", help="print the version as JSON")) -> None:
    """Register a generative model: a local one (converted once to fp32 safetensors) or an upstream provider's
    resold through the gateway; the first version of a name goes to production."""
    from modelshop.errors import ValidationError
    from modelshop.settings import get_settings

    if (base_model is None) == (upstream is None):
        raise ValidationError("give --base-model (a local model) or --upstream URL with --upstream-model "
                              "(a provider's), one of them")
    if upstream is not None:
        from modelshop.llm.upstream import add_upstream

        if not upstream_model:
            raise ValidationError("--upstream needs --upstream-model: the provider's model id")
        result = add_upstream(name, upstream, upstream_model, key_env=upstream_key_env, cost_input=cost_input,
                              cost_output=cost_output, fallbacks=(fallback or "").split(","), timeout_s=timeout,
                              context_length=context_length, tokenizer=tokenizer)
        if json_out:
            emit_json(result)
            return
        falls = f", then {', '.join(result['fallbacks'])}" if result["fallbacks"] else ""
        costs = f"{result['cost_input_per_million']} / {result['cost_output_per_million']}"
        typer.echo(f"registered {result['name']}:{result['version']} ({result['stage']}): upstream "
                   f"{result['upstream_model']} at {result['base_url']}{falls}; costs {costs} per million "
                   "input / output tokens")
        return
    from modelshop.llm.registry import add_local

    say = (lambda m: typer.echo(m, err=True)) if get_settings().progress else None
    result = add_local(name, base_model, say=say)
    if json_out:
        emit_json(result)
        return
    typer.echo(f"registered {result['name']}:{result['version']} ({result['stage']}): {result['architecture']}, "
               f"{result['parameters']:,} parameters, context {result['context_length']} tokens"
               + ("" if result["has_chat_template"] else ", no chat template (completions only)"))
    typer.echo(f"files: {result['path']}")


@app.command("list")
def list_(json_out: bool = typer.Option(False, "--json", help="print the versions as JSON")) -> None:
    """Every generative version with its stage, architecture, context length and size."""
    from modelshop.llm.registry import list_generative

    rows = list_generative()
    if json_out:
        emit_json(rows)
        return
    if not rows:
        typer.echo("no generative model registered yet; run `modelshop llm add --name NAME --base-model smollm2`")
    for r in rows:
        if r.get("source") == "upstream":
            typer.echo(f"{r['name']}:{r['version']}\t{r['stage']}\tupstream\t{r['base_model']}")
            continue
        params = f"{r['parameters']:,}" if r["parameters"] else "?"
        typer.echo(f"{r['name']}:{r['version']}\t{r['stage']}\t{r['architecture']}\tcontext {r['context_length']}"
                   f"\t{params} parameters\t{r['base_model']}")


@app.command()
def train(data: Path = typer.Option(..., "--data", help="conversations: JSONL with messages, prompt/completion, "
                                                         "or a CSV/JSONL/Parquet of questions and answers"),
          name: str = typer.Option(..., "--name", help="registered name of the fine-tuned model"),
          base_model: str = typer.Option(None, "--base-model", help="a registered generative NAME | smollm2 | "
                                                                     "a .gguf file | a HF folder [default: smollm2]"),
          eval: Path = typer.Option(None, "--eval", help="evaluation file; default: 20% of --data held out"),
          question_col: str = typer.Option(None, help="question column (auto-detected: question, q, prompt ...)"),
          answer_col: str = typer.Option(None, help="answer column (auto-detected: answer, a, completion ...)"),
          epochs: int = typer.Option(None, help="passes over the data [default: 3]"),
          max_length: int = typer.Option(None, help="tokens per conversation [default: the longest]"),
          batch_size: int = typer.Option(None, help="conversations per batch [default: 8]"),
          learning_rate: float = typer.Option(None, help="AdamW learning rate [default: 2e-4]"),
          lora_rank: int = typer.Option(None, help="LoRA rank r [default: 16]"),
          seed: int = typer.Option(None, help="random seed [default: 42]"),
          limit: int = typer.Option(None, help="use only the first N rows"),
          config: Path = typer.Option(None, "--config", help="YAML file of fine-tuning options"),
          checkpoint_dir: Path = typer.Option(None, help="keep checkpoints here "
                                                      "[default: MODELSHOP_HOME/runs/llm-NAME]"),
          resume: bool = typer.Option(False, help="resume from the last checkpoint"),
          json_out: bool = typer.Option(False, "--json", help="print the figures as JSON")) -> None:
    """Fine-tune a generative model with LoRA, score it beside its base, register it (merged, ready to serve)."""
    from modelshop.llm.finetune import FinetuneConfig, run_finetune
    from modelshop.settings import get_settings

    options = {"base_model": base_model, "epochs": epochs, "max_length": max_length, "batch_size": batch_size,
               "learning_rate": learning_rate, "lora_rank": lora_rank, "seed": seed, "limit": limit,
               "checkpoint_dir": checkpoint_dir, "resume": resume or None}
    cfg = (FinetuneConfig.from_yaml(config, **options) if config
           else FinetuneConfig.from_dict({k: v for k, v in options.items() if v is not None}))
    say = (lambda m: typer.echo(m, err=True)) if get_settings().progress else None
    result = run_finetune(data, eval, name=name, cfg=cfg, question_col=question_col, answer_col=answer_col, say=say)
    if json_out:
        emit_json(result)
        return
    typer.echo(f"registered {result['name']}:{result['version']} ({result['stage']}), fine-tuned from {result['base']}")
    _echo_scores(result, result["base_eval"])
    typer.echo(result["reason"])
    s = result["serving"]
    if s.get("merged_tokens_per_s"):
        typer.echo(f"serving merged: {s['merged_tokens_per_s']} tokens/s (adapter on the base: "
                   f"{s['adapter_tokens_per_s']} tokens/s)")
    typer.echo(f"model card: {result['card']}")


@app.command("eval")
def eval_(model: str = typer.Option(..., "--model", help="NAME or NAME:VERSION"),
          data: Path = typer.Option(..., "--data", help="questions with reference answers (as for llm train)"),
          question_col: str = typer.Option(None, help="question column (auto-detected)"),
          answer_col: str = typer.Option(None, help="answer column (auto-detected)"),
          limit: int = typer.Option(None, help="use only the first N rows"),
          answer_limit: int = typer.Option(None, help="generate greedy answers for only the first N rows"),
          json_out: bool = typer.Option(False, "--json", help="print the figures as JSON")) -> None:
    """Perplexity of the reference answers, token-F1 and exact match of greedy answers: the version and its base."""
    from modelshop.llm.evaluate import evaluate_version
    from modelshop.settings import get_settings

    say = (lambda m: typer.echo(m, err=True)) if get_settings().progress else None
    result = evaluate_version(model, data, question_col=question_col, answer_col=answer_col, limit=limit,
                              answer_limit=answer_limit, say=say)
    if json_out:
        emit_json({k: v for k, v in result.items() if k != "answers"} | {"base": _no_answers(result["base"])})
        return
    typer.echo(f"{result['name']}:{result['version']} on {result['rows']} rows")
    _echo_scores(result, result["base"])
    typer.echo(result["reason"])


def _echo_scores(version: dict, base: dict | None) -> None:
    def line(who: str, s: dict) -> str:
        f1 = f"{s['token_f1']:.4f}" if s.get("token_f1") is not None else "—"
        em = f"{s['exact_match']:.4f}" if s.get("exact_match") is not None else "—"
        return f"{who}: perplexity {s['perplexity']:.2f}  token-F1 {f1}  exact match {em}"

    scores = version.get("eval", version)
    typer.echo(line("this model", scores))
    if base:
        typer.echo(line(f"base {base.get('model', version.get('base', ''))}", base))


def _no_answers(d: dict | None) -> dict | None:
    return {k: v for k, v in d.items() if k != "answers"} if d else d
