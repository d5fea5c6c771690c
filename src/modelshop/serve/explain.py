"""Why a model gave its answer: token attributions for `/explain`.

    integrated_gradients  Captum LayerIntegratedGradients on the word embeddings of a PyTorch fp32
                          transformer, from an all-[PAD] baseline (special tokens kept); the scores
                          add up to logit(text) − logit(baseline), up to `convergence_delta`
    occlusion             Captum FeatureAblation: each token replaced by [MASK] in turn; a score is the
                          drop in the target's probability. Works for every transformer form (int8 and
                          ONNX have no gradients)
    coefficients          tfidf models: the linear model's coefficient × the tf-idf value of each n-gram
                          in the text, each n-gram's share spread over the words it covers; scores +
                          `bias` + `unattributed` add up exactly to the target's log-odds

Runs on the model's own thread (never beside one of its batches).
"""

from __future__ import annotations

import re
from collections import defaultdict

import numpy as np

from modelshop.errors import ValidationError, did_you_mean

METHODS = ("integrated_gradients", "occlusion", "coefficients")


def pick_method(family: str, fmt: str, asked: str | None) -> str:
    if family == "tfidf":
        allowed, default = ("coefficients",), "coefficients"
    elif fmt == "pytorch":
        allowed, default = ("integrated_gradients", "occlusion"), "integrated_gradients"
    else:  # int8 and onnx: no gradients through quantised or exported graphs
        allowed, default = ("occlusion",), "occlusion"
    method = asked or default
    if method not in allowed:
        raise ValidationError(f'method "{method}" does not work for a {family}/{fmt} model; use '
                              f'{" or ".join(allowed)}{did_you_mean(method, allowed)}')
    return method


def target_index(labels: list[str], target: str | None, logits: np.ndarray) -> int:
    if target is None:
        return int(np.argmax(logits))
    if target not in labels:
        raise ValidationError(f'target "{target}" is not a label of this model; labels: {", ".join(labels)}'
                              f"{did_you_mean(target, labels)}")
    return labels.index(target)


# --- transformers ---------------------------------------------------------------------------------

def explain_transformer(runner, encoded, target: str | None, method: str, steps: int, multi_label: bool) -> dict:
    import torch
    from captum.attr import FeatureAblation, LayerIntegratedGradients

    from modelshop.inference.base import probabilities

    model = runner.model
    tokenizer = runner.tokenizer
    batch = runner.pad([encoded])
    logits = np.asarray(model.forward(batch))[0]
    t = target_index(list(model.labels), target, logits)
    tensors = {k: torch.as_tensor(np.asarray(v)) for k, v in batch.items()}
    ids = tensors["input_ids"]
    rest = {k: v for k, v in tensors.items() if k != "input_ids"}
    special_ids = set(tokenizer.all_special_ids)
    special = torch.tensor([i in special_ids for i in ids[0].tolist()])
    result: dict = {}
    if method == "integrated_gradients":
        net = model.model

        def forward(input_ids):
            return net(input_ids=input_ids, **{k: v.expand(input_ids.shape[0], -1) for k, v in rest.items()}).logits

        baseline = torch.where(special, ids[0], torch.tensor(runner.pad_id)).unsqueeze(0)
        lig = LayerIntegratedGradients(forward, net.get_input_embeddings())
        with torch.enable_grad():
            attr, delta = lig.attribute(ids, baselines=baseline, target=t, n_steps=steps,
                                        internal_batch_size=steps, return_convergence_delta=True)
        scores = attr.sum(-1)[0].detach().numpy()
        with torch.inference_mode():
            base_logit = float(forward(baseline)[0, t])
        result.update(baseline_logit=round(base_logit, 6), convergence_delta=round(float(delta[0]), 6))
    else:
        mask_id = tokenizer.mask_token_id if tokenizer.mask_token_id is not None else runner.pad_id

        def forward(input_ids):
            feed = {"input_ids": input_ids, **{k: v.expand(input_ids.shape[0], -1) for k, v in rest.items()}}
            if not runner.as_torch:
                feed = {k: v.numpy() for k, v in feed.items()}
            out = np.asarray(model.forward(feed))
            return torch.as_tensor(probabilities(out, multi_label), dtype=torch.float32)

        groups = torch.arange(ids.shape[1]).unsqueeze(0)
        scores = FeatureAblation(forward).attribute(ids, baselines=mask_id, target=t, feature_mask=groups,
                                                    perturbations_per_eval=16)[0].numpy()
    tokens = tokenizer.convert_ids_to_tokens(ids[0].tolist())
    probs = probabilities(logits[None, :], multi_label)[0]
    result.update(label=model.labels[t], score=float(probs[t]), target_logit=float(logits[t]), method=method,
                  attributions=[{"token": tok, "score": float(s)} for tok, s, sp in
                                zip(tokens, scores, special.tolist(), strict=True) if not sp])
    return result


# --- tfidf ----------------------------------------------------------------------------------------

class TfidfExplainer:
    """Coefficient × feature attributions for the tfidf pipeline of one served version."""

    def __init__(self, predictor) -> None:
        self.predictor = predictor
        self.union = predictor.pipeline.named_steps["features"]
        self.clf = predictor.pipeline.named_steps["clf"]
        self.vectorizers = [vec for _, vec in self.union.transformer_list]
        self.inverse = [{i: term for term, i in vec.vocabulary_.items()} for vec in self.vectorizers]
        self.offsets = np.cumsum([0] + [len(vec.vocabulary_) for vec in self.vectorizers])

    def _weights(self, t: int) -> tuple[np.ndarray, float]:
        """(coefficients, intercept) whose dot with the features is the target's log-odds."""
        clf, labels = self.clf, self.predictor.labels
        if self.predictor.multi_label:
            est = clf.estimators_[t]
            if not hasattr(est, "coef_"):  # a label constant in training: no weights at all
                return np.zeros(self.offsets[-1]), 0.0
            return np.asarray(est.coef_[0], dtype=np.float64), float(est.intercept_[0])
        coef = np.asarray(clf.coef_, dtype=np.float64)
        if coef.shape[0] == 1 and len(labels) == 2:  # binary: logits are [0, d]
            sign = 1.0 if t == 1 else -1.0
            return sign * coef[0], sign * float(clf.intercept_[0])
        return coef[t], float(clf.intercept_[t])

    def explain(self, text: str, target: str | None) -> dict:
        from modelshop.inference.base import probabilities

        logits = self.predictor.logits([text])[0]
        t = target_index(self.predictor.labels, target, logits)
        coef, bias = self._weights(t)
        row = self.union.transform([text]).tocsr()
        contrib = {int(j): float(v) * coef[int(j)] for j, v in zip(row.indices, row.data, strict=True)}
        units, char_mode = _units(text, self.vectorizers)
        scores = np.zeros(len(units))
        unattributed = 0.0
        named = []
        for k, vec in enumerate(self.vectorizers):
            occ = _occurrences(vec, text)
            for j, c in contrib.items():
                if not self.offsets[k] <= j < self.offsets[k + 1]:
                    continue
                term = self.inverse[k][j - self.offsets[k]]
                named.append({"feature": term, "kind": vec.analyzer, "score": c})
                spans = occ.get(term, [])
                if not spans:
                    unattributed += c
                    continue
                for start, end in spans:
                    hit = [u for u, (us, ue, _) in enumerate(units) if us < end and start < ue]
                    for u in hit or []:
                        scores[u] += c / len(spans) / len(hit)
                    if not hit:
                        unattributed += c / len(spans)
        named.sort(key=lambda f: -abs(f["score"]))
        probs = probabilities(logits[None, :], self.predictor.multi_label)[0]
        margin = float(sum(contrib.values()) + bias)
        return {"label": self.predictor.labels[t], "score": float(probs[t]), "method": "coefficients",
                "target_logit": margin, "bias": bias, "unattributed": unattributed,
                "attributions": [{"token": u[2], "score": float(s), "start": u[0], "end": u[1]}
                                 for u, s in zip(units, scores, strict=True)],
                "features": named[:20], "units": "characters" if char_mode else "words"}


def _units(text: str, vectorizers) -> tuple[list[tuple[int, int, str]], bool]:
    """What attributions are shown on: whitespace-separated words, or characters for char-mode (CJK)."""
    char_mode = any(v.analyzer == "char" for v in vectorizers)
    if char_mode:
        return [(i, i + 1, ch) for i, ch in enumerate(text) if not ch.isspace()], True
    return [(m.start(), m.end(), m.group()) for m in re.finditer(r"\S+", text)], False


def _occurrences(vec, text: str) -> dict[str, list[tuple[int, int]]]:
    """Each n-gram the vectorizer sees in `text`, with the character spans of its occurrences."""
    low = text.lower() if vec.lowercase else text
    if len(low) != len(text):  # lower() changed lengths (rare scripts): spans would be wrong
        return {}
    lo, hi = vec.ngram_range
    found: dict[str, list[tuple[int, int]]] = defaultdict(list)
    if vec.analyzer == "word":
        toks = [(m.group(), m.start(), m.end()) for m in re.finditer(vec.token_pattern, low)]
        for n in range(lo, hi + 1):
            for i in range(len(toks) - n + 1):
                found[" ".join(t[0] for t in toks[i:i + n])].append((toks[i][1], toks[i + n - 1][2]))
    elif vec.analyzer == "char_wb":  # as sklearn: each word padded with one space, short words once
        for m in re.finditer(r"\S+", low):
            w = " " + m.group() + " "
            for n in range(lo, hi + 1):
                offset = 0
                while True:
                    s = m.start() + offset - 1
                    found[w[offset:offset + n]].append((max(s, m.start()), min(s + n, m.end())))
                    if offset + n >= len(w):
                        break
                    offset += 1
                if offset == 0:
                    break
    elif vec.analyzer == "char" and not re.search(r"\s\s", low):  # sklearn squeezes runs of spaces
        for n in range(lo, hi + 1):
            for i in range(len(low) - n + 1):
                found[low[i:i + n]].append((i, i + n))
    return found
