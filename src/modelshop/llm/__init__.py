"""Generative models: registering causal LMs (`registry`; a GGUF or Hugging Face
checkpoint converted once to fp32 safetensors by `convert`), the continuous-batching engine (`engine`),
sampling (`sampling`) and constrained decoding (`constrain`). Below `serve`, which puts them behind
the OpenAI-compatible API; beside `train`. May import: data, registry, inference, gate, db, errors, settings."""
