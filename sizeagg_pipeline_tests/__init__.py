"""sizeagg's tests, laid out like the package they test.

The tests of `sizeagg_pipeline/X/y.py` are in `sizeagg_pipeline_tests/X/test_y.py`;
where one module's tests need a second data set of their own, that file is
`test_y_<what>.py` next to it (for example `core/test_aggregation_math.py`).
`test_definitions.py` tests the one `Definitions` object, `e2e/` holds the tests that
start real `dagster dev` / webserver / daemon processes, and `benchmarks/` the test of
`benchmarks/aggregation_bench.py`. Fixtures are in `conftest.py`; shared helpers,
data sets and process and server control are in `support/`.
"""
