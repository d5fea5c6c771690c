"""Generative models: registering causal LMs (`registry`), the continuous-batching engine (`engine`),
sampling (`sampling`) and constrained decoding (`constrain`). Below `serve`, which puts them behind
the OpenAI-compatible API; beside `train`. May import: data, registry, inference, gate, db, errors, settings."""
