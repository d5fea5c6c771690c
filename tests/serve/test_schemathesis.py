"""Property-based fuzzing of every route from /openapi.json (schemathesis, in-process ASGI): no 5xx.

Bounded: a fixed number of generated requests per operation, no example database on disk.
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.configuration import set_hypothesis_home_dir
from schemathesis.checks import not_a_server_error

from modelshop.platform import build_app
from tests.support import AUTH, make_settings

EXAMPLES_PER_OPERATION = 20


def test_no_server_errors_on_any_route(served_settings, tiny_bert, tmp_path):
    set_hypothesis_home_dir(tmp_path / "hypothesis")  # its caches, out of the work tree
    app = build_app(make_settings(served_settings.home, default_model="toy", embedding_model=str(tiny_bert),
                                   max_input_chars=2000))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/predict", "/models/{name}", "/v1/embeddings", "/explain",
                                              "/health", "/info", "/metrics"}
    statuses: dict[str, set[int]] = {}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        def fuzz(case):
            if case.path_parameters and "name" in case.path_parameters:
                case.path_parameters["name"] = "toy"  # reach the model, not only the 404 of a random name
            response = case.call(headers=AUTH)
            statuses.setdefault(operation.path, set()).add(response.status_code)  # noqa: B023 - runs at once
            case.validate_response(response, checks=[not_a_server_error])

        fuzz()
    # the fuzzing reached the models, not only the validation errors
    assert 200 in statuses["/predict"] | statuses["/models/{name}"]
