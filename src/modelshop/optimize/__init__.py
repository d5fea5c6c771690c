"""Model compression (the "optimisation" step): dynamic int8 quantisation and ONNX Runtime export.

Each compressed form is registered as a new staging version of the same name (parent = the source
version), with its speed and accuracy measured beside the source's on the same eval file.

    compress   build the folder of an int8, onnx or onnx-int8 version
    measure    texts/s and accuracy/macro-F1 of a predictor on a labelled file

May import: inference, registry, data, train.metrics, settings, errors.
"""

from modelshop.optimize.compress import VARIANTS, optimize

__all__ = ["VARIANTS", "optimize"]
