"""Issue 16, first step: the fidelity budget and the candidate plan of ``deploylab tune``."""

from __future__ import annotations

import math

import pytest

from deploylab.errors import DeployLabError
from deploylab.tune import parse_budget, plan_candidates


@pytest.mark.parametrize("text, metric, bound", [
    ("top1-agreement>=0.99", "top1-agreement", 0.99),
    (" accuracy-drop <= 0.5 ", "accuracy-drop", 0.5),
    ("kl<=0.01", "kl", 0.01),
    ("max-abs-error<=1e-3", "max-abs-error", 1e-3),
])
def test_budgets_parse(text, metric, bound):
    budget = parse_budget(text)
    assert (budget.metric, budget.bound) == (metric, bound)


@pytest.mark.parametrize("text, said", [
    ("top1-agreement", "is not METRIC>=N"),
    ("speed>=2", "unknown metric 'speed'"),
    ("top1-agreement<=0.99", "is bounded with >="),
    ("accuracy-drop>=0.5", "is bounded with <="),
    ("top1-agreement>=1.5", "from 0 to 1"),
    ("kl<=-1", "of at least 0"),
    ("kl<=nan", "of at least 0"),
    ("top1-agreement>=abc", "from 0 to 1"),
])
def test_bad_budgets_are_one_line(text, said):
    with pytest.raises(DeployLabError, match=said) as err:
        parse_budget(text)
    assert "\n" not in str(err.value)


def test_a_budget_can_fail():
    keep = parse_budget("top1-agreement>=0.99")
    assert keep.met(0.995) and keep.met(0.99)
    assert not keep.met(0.98) and not keep.met(None) and not keep.met(math.nan)
    drop = parse_budget("accuracy-drop<=0.5")
    assert drop.met(0.5) and not drop.met(0.51)


def _plan(**kw):
    options = dict(backends=["onnxruntime", "openvino", "tensorrt"], precisions=["fp32", "bf16", "fp16", "int8"],
                   cpus=2, bf16_cpu=False, tensorrt_here=False, model="m.onnx")
    options.update(kw)
    return plan_candidates(options.pop("backends"), options.pop("precisions"), **options)


def test_the_plan_follows_the_machine():
    without = _plan(bf16_cpu=False)
    with_bf16 = _plan(bf16_cpu=True)
    ov_bf16 = [c for c in without if c.backend == "openvino" and c.precision == "bf16"]
    assert ov_bf16 and all(c.status == "refused" and "no native bf16" in c.reason for c in ov_bf16)
    assert all(c.status == "run" for c in with_bf16 if c.backend == "openvino" and c.precision == "bf16")
    # TensorRT without a GPU: listed, with the command that builds it where one is
    trt = [c for c in without if c.backend == "tensorrt"]
    assert len(trt) == 4 and all(c.status == "not on this machine" and "--backend tensorrt" in c.command
                                 and "m.onnx" in c.command for c in trt)
    # with a GPU: listed for a run by hand (tune does not time plans itself yet), with the commands
    with_gpu = [c for c in _plan(tensorrt_here=True) if c.backend == "tensorrt"]
    assert all(c.status == "refused" and "by hand" in c.reason and "deploylab bench" in c.command for c in with_gpu)
    # every candidate not measured here says why
    assert all(c.reason for c in without if c.status != "run")


def test_the_plan_covers_the_settings_that_matter_cheapest_first():
    plan = _plan()
    runnable = [c for c in plan if c.status == "run"]
    assert {c.threads for c in runnable if c.backend != "tensorrt"} == {1, 2}
    assert {(c.recipe, c.calibration) for c in runnable if c.backend == "onnxruntime" and c.precision == "int8"} == {
        ("u8s8-per-channel", "minmax"), ("u8s8-per-channel", "entropy"), ("u8s8-per-channel", "percentile"),
        ("s8s8-symmetric", "minmax")}
    assert {c.hint for c in runnable if c.backend == "openvino"} == {"latency", "throughput"}
    assert any(c.recipe == "nncf" for c in runnable)
    costs = [c.cost for c in runnable]
    assert costs == sorted(costs) and runnable[0].precision == "fp32"
    assert plan.index(runnable[-1]) < min(plan.index(c) for c in plan if c.status != "run")
    assert len({c.name for c in plan}) == len(plan)  # every candidate is named apart
    assert {c.threads for c in _plan(cpus=1)} == {1}


@pytest.mark.parametrize("kw, said", [
    (dict(backends=["onnxruntime", "tvm"]), "--backends: unknown 'tvm'"),
    (dict(precisions=["int3"]), "--precisions: unknown 'int3'"),
    (dict(precisions=[""]), "--precisions: unknown '\\(none\\)'"),
    (dict(cpus=0), "cpus must be a positive integer"),
])
def test_bad_plans_are_refused(kw, said):
    with pytest.raises(DeployLabError, match=said):
        _plan(**kw)


def test_a_budget_judges_measured_fidelity_and_fails_a_broken_candidate():
    """On real classifier-like logits: the same outputs keep every budget; a candidate with one layer's
    worth of damage (half the rows' classes swapped) or constant outputs does not."""
    import numpy as np

    from deploylab.quantize.evaluate import fidelity

    rng = np.random.default_rng(0)
    reference = rng.standard_normal((200, 10)) * 3
    same = fidelity(reference, reference + rng.standard_normal(reference.shape) * 1e-4)
    damaged = reference.copy()
    damaged[::2] = damaged[::2, ::-1]
    broken = fidelity(reference, damaged)
    constant = fidelity(reference, np.tile(reference[:1], (200, 1)))
    for text in ("top1-agreement>=0.99", "top5-overlap>=0.95", "kl<=0.01", "max-abs-error<=0.01"):
        budget = parse_budget(text)
        assert budget.keeps(same), text
        assert not budget.keeps(broken) and not budget.keeps(constant), text
    drop = parse_budget("accuracy-drop<=0.5")
    assert drop.keeps(same, accuracy_drop=0.2) and not drop.keeps(same, accuracy_drop=1.0)
    assert not drop.keeps(same)  # accuracy not measured: never chosen
