"""Applications on top of the served models (seed node F) and the feedback loop (G → A).

    faq        question answering over a knowledge base of question–answer pairs (minilm embeddings)
    support    the customer-service bot: intent model + FAQ + hand-off rules, sessions, tickets
    compose    a bot's generated reply (--llm): the prompt over the retrieved answers, citations checked
    feedback   the labelling queue and the dataset versions it feeds back to training
    recommend  hybrid recommendation: collaborative filtering (EASE) + item text embeddings
    recdata    reading items and interactions (CSV/JSONL/Parquet, RecBole atomic files)
    artifacts  immutable, versioned artifacts (knowledge bases, recommenders): files + one DB row
    api        the HTTP routes under /apps (authenticated and metered through the server's gate)

Models are reached only through the `Models` interface (`inference.models`): the server hands in
its `PooledModels`, the CLI and library calls get `DirectModels`. No app loads a model itself.
May import: db, settings, errors, data, registry, inference, serve (deps, metering, the Models backings).
"""
