"""The optical-flow benchmark case (benchmarks/fdpkit_bench/flow_case.py): planned one job (one fresh
process) per method, and its records valid, with every clip's flow made. Speed itself is measured by
`fdpkit bench --only flow`, never asserted here."""

from __future__ import annotations

from fdpkit_bench.cases import plan
from fdpkit_bench.flow_case import flow_case
from fdpkit_bench.harness import validate_record


def test_the_plan_has_one_flow_job_per_method():
    jobs = [j for j in plan(["flow"]) if j["fn"].endswith(":flow_case")]
    assert [j["params"]["method"] for j in jobs] == ["tvl1", "farneback", "dis"]
    assert len({j["params"]["case"] for j in jobs}) == 3 and all(j["timeout_s"] > 0 for j in jobs)
    assert all(j["fn"] == "fdpkit_bench.flow_case:flow_case" for j in jobs)
    assert [j for j in plan(quick=True) if j["fn"].endswith(":flow_case")]   # in the default plan too


def test_flow_case_records():
    records = flow_case({"case": "flow/dis", "method": "dis", "subjects": 1, "clips_per_subject": 2,
                         "warmup": 0, "repeats": 1, "verbose": False})
    assert [r["mode"] for r in records] == ["dis inputs", "dis preprocess"]
    for record in records:
        validate_record(record)
        assert record["benchmark"] == "flow" and record["n_items"] == 2 and record["items_per_s"] > 0
    assert records[1]["statuses"] == ["ok"]
