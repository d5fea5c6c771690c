"""Plans priced per token and per model, shared by the billing tests of generative calls."""

from __future__ import annotations

BASE = {"code": "gen", "currency": "USD"}
SMOL_IN = {"metric": "input_tokens", "model": "unit", "unit_price": "0.0000002", "models": ["smollm2"]}   # 0.20/M
SMOL_OUT = {"metric": "output_tokens", "model": "unit", "unit_price": "0.0000006", "models": ["smollm2"]}  # 0.60/M
OTHER_IN = {"metric": "input_tokens", "model": "unit", "unit_price": "0.000001"}                         # 1.00/M
OTHER_OUT = {"metric": "output_tokens", "model": "graduated",                                           # 2.00/M first
             "tiers": [{"up_to": 1_000_000, "unit_price": "0.000002"}, {"up_to": None, "unit_price": "0.000001"}]}
# smollm2 at 0.20/M input and 0.60/M output, every other model at 1.00/M and 2.00/M (then 1.00/M past 1 M)
GEN = {**BASE, "charges": [SMOL_IN, SMOL_OUT, OTHER_IN, OTHER_OUT]}
