"""Prometheus metrics of one server, on its own registry (so two apps in one process never clash)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("modelshop_requests", "HTTP requests answered, by route and status",
                                ["route", "status"], registry=r)
        self.failures = Counter("modelshop_request_failures", "requests answered with an error, by route and type",
                                ["route", "error_type"], registry=r)
        self.queue_seconds = Histogram("modelshop_queue_seconds", "time an input waited for its batch",
                                       ["model"], buckets=SECONDS, registry=r)
        self.tokenization_seconds = Histogram("modelshop_tokenization_seconds", "tokenising one request's inputs",
                                              ["model"], buckets=SECONDS, registry=r)
        self.inference_seconds = Histogram("modelshop_inference_seconds", "one batch's forward pass",
                                           ["model"], buckets=SECONDS, registry=r)
        self.batch_size = Histogram("modelshop_batch_size", "inputs per batch", ["model"], buckets=SIZES, registry=r)
        self.batch_tokens = Histogram("modelshop_batch_tokens", "padded tokens per batch (longest × inputs)",
                                      ["model"], buckets=tuple(s * 64 for s in SIZES), registry=r)
        self.queue_size = Gauge("modelshop_queue_size", "inputs waiting for a batch", ["model"], registry=r)
        self.in_flight = Gauge("modelshop_requests_in_flight", "requests holding an inference slot", registry=r)
        self.dropped = Counter("modelshop_dropped_inputs", "inputs dropped before inference: their client left",
                               ["model"], registry=r)
        self.overloaded = Counter("modelshop_overloaded", "requests refused with 429: all slots taken", registry=r)
        self.worker_restarts = Counter("modelshop_worker_restarts", "model worker processes that died and were "
                                       "started again", ["model"], registry=r)
        self.swaps = Counter("modelshop_model_swaps", "new production versions swapped in while serving",
                             ["model"], registry=r)

        # generative models
        self.llm_output_tokens = Counter("modelshop_llm_output_tokens", "tokens generated, by model", ["model"],
                                         registry=r)
        self.llm_input_tokens = Counter("modelshop_llm_input_tokens", "prompt tokens read, by model", ["model"],
                                        registry=r)
        self.llm_ttft = Histogram("modelshop_llm_time_to_first_token_seconds", "from admission to the first token",
                                  ["model"], buckets=SECONDS + (30.0, 60.0), registry=r)
        self.llm_itl = Histogram("modelshop_llm_inter_token_latency_seconds", "between two tokens of one sequence",
                                 ["model"], buckets=SECONDS, registry=r)
        self.llm_running = Gauge("modelshop_llm_running_sequences", "sequences in the running batch", ["model"],
                                 registry=r)
        self.llm_waiting = Gauge("modelshop_llm_waiting_sequences", "sequences waiting for the running batch",
                                 ["model"], registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
