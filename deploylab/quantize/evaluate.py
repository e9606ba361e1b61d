"""How good is a converted model: accuracy with labels, fidelity to the fp32 model without.

Accuracy needs labels: the digits test split for LeNet, and for ImageNet classifiers the
labelled photos (each accepts a *set* of classes: the cat is right as tabby, tiger cat or
Egyptian cat). Eight photos are a sanity check, not a benchmark, so the main question on
photos is *fidelity*: does the converted model give the same answer as the fp32 one on
hundreds of augmented views? Top-1 agreement is what a user sees; top-5 overlap, the KL
divergence of the softmax and the max absolute logit error show smaller drifts before
they flip a decision.

A fidelity check must be able to fail, and it cannot judge a reference that does not
discriminate: a constant classifier (every view the same class, as a seeded ResNet-18 is)
agrees with any other constant classifier. :func:`check_fidelity` reports that as
*degenerate* instead of passing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from deploylab.batching import predict
from deploylab.compare import max_abs_error, mean_kl_divergence, mean_row_cosine, top1_agreement, topk_overlap
from deploylab.errors import DeployLabError


def accuracy_onnx(runner_or_path, images: np.ndarray, labels: np.ndarray, batch_size: int = 64) -> float:
    """Fraction of ``images`` whose argmax output equals ``labels`` (any runner or .onnx/.xml path)."""
    labels = np.asarray(labels)
    if len(labels) != len(images):
        raise DeployLabError(f"{len(images)} images but {len(labels)} labels; give one label per image")
    logits = predict(runner_or_path, images, batch_size)
    return float((logits.reshape(len(labels), -1).argmax(axis=1) == labels).mean())


@dataclass(frozen=True)
class Fidelity:
    """A candidate's outputs against the reference's on the same inputs."""

    top1_agreement: float  # fraction of rows with the same argmax
    mean_cosine: float  # mean per-row cosine (compare.mean_row_cosine), not the whole-array cosine
    max_abs_error: float
    samples: int
    top5_overlap: float | None = None  # mean fraction of the reference's 5 best among the candidate's 5 best
    mean_kl: float | None = None  # mean KL(reference softmax || candidate softmax), nats
    reference_classes: int = 0  # distinct argmax classes among the reference rows

    def to_dict(self) -> dict:
        return asdict(self)

    def format(self) -> str:
        extra = "" if self.top5_overlap is None else f", top-5 overlap {self.top5_overlap:.2%}"
        extra += "" if self.mean_kl is None else f", KL {self.mean_kl:.3g}"
        return (f"top-1 agreement {self.top1_agreement:.2%}{extra}, mean cosine {self.mean_cosine:.6f}, "
                f"max abs error {self.max_abs_error:.4g} ({self.samples} samples)")


def _probabilities(outputs: np.ndarray) -> np.ndarray:
    from deploylab.postprocess import is_probability, softmax

    return np.clip(outputs, 0.0, None) if is_probability(outputs) else softmax(outputs)


def fidelity(reference_outputs: np.ndarray, candidate_outputs: np.ndarray) -> Fidelity:
    """Top-1 agreement, top-5 overlap, KL, mean row cosine and max abs error of ``candidate``
    against ``reference`` (N, C). Logits and probabilities are both accepted (KL uses the
    softmax of logits, the rows themselves when they already are probabilities)."""
    ref = np.asarray(reference_outputs, dtype=np.float64)
    cand = np.asarray(candidate_outputs, dtype=np.float64)
    if ref.shape != cand.shape or ref.ndim < 1 or ref.shape[0] == 0:
        raise DeployLabError(
            f"outputs of shape {cand.shape} cannot be compared with reference outputs of shape {ref.shape}; "
            "run both models on the same non-empty inputs"
        )
    ref, cand = ref.reshape(len(ref), -1), cand.reshape(len(cand), -1)
    top5 = kl = None
    if ref.shape[1] > 5:
        top5 = topk_overlap(ref, cand, 5)
    if ref.shape[1] > 1:
        kl = mean_kl_divergence(_probabilities(ref), _probabilities(cand))
    return Fidelity(
        top1_agreement=top1_agreement(ref, cand),
        mean_cosine=mean_row_cosine(ref, cand),
        max_abs_error=max_abs_error(ref, cand),
        samples=len(ref),
        top5_overlap=top5,
        mean_kl=kl,
        reference_classes=int(len(np.unique(ref.argmax(axis=1)))),
    )


@dataclass(frozen=True)
class FidelityBudget:
    """What "still the same model" means: bounds a candidate must meet on the views."""

    min_top1_agreement: float = 0.99
    max_mean_kl: float = 0.05
    min_reference_classes: int = 2  # fewer distinct reference answers: the check cannot judge

    def check(self, result: Fidelity) -> FidelityVerdict:
        return check_fidelity(result, self)


@dataclass(frozen=True)
class FidelityVerdict:
    verdict: str  # "PASS", "FAIL" or "DEGENERATE"
    reasons: tuple[str, ...]
    fidelity: Fidelity

    @property
    def passed(self) -> bool:
        return self.verdict == "PASS"

    def format(self) -> str:
        why = "" if not self.reasons else ": " + "; ".join(self.reasons)
        return f"{self.verdict} {self.fidelity.format()}{why}"


def check_fidelity(result: Fidelity, budget: FidelityBudget | None = None) -> FidelityVerdict:
    """PASS when ``result`` meets ``budget``; DEGENERATE when the reference gives (nearly) one
    answer for every view, so agreement proves nothing; FAIL otherwise, with the reasons."""
    budget = budget or FidelityBudget()
    if result.reference_classes < budget.min_reference_classes:
        return FidelityVerdict("DEGENERATE", (
            f"the reference predicts {result.reference_classes} class(es) over {result.samples} inputs: a constant "
            "classifier agrees with any other, so this check cannot judge it; use real weights "
            "(e.g. efficientnet_lite0) or realistic inputs",), result)
    reasons = []
    if result.top1_agreement < budget.min_top1_agreement:
        reasons.append(f"top-1 agreement {result.top1_agreement:.2%} < {budget.min_top1_agreement:.2%}")
    if result.mean_kl is not None and not result.mean_kl <= budget.max_mean_kl:
        reasons.append(f"KL {result.mean_kl:.3g} > {budget.max_mean_kl:g}")
    return FidelityVerdict("FAIL" if reasons else "PASS", tuple(reasons), result)


@dataclass(frozen=True)
class LabelledAccuracy:
    """Top-1 / top-5 accuracy against accepted label sets (a row is right if any accepted class is)."""

    top1: float
    top5: float
    samples: int
    correct_top1: tuple[bool, ...]

    def format(self) -> str:
        return f"top-1 {self.top1:.1%}, top-5 {self.top5:.1%} ({self.samples} images)"


def labelled_accuracy(outputs: np.ndarray, accepted) -> LabelledAccuracy:
    """Accuracy of (N, C) ``outputs`` where row ``i`` is correct if its argmax (top-1) or any of
    its 5 best (top-5) is in ``accepted[i]`` (a collection of class indices)."""
    outputs = np.asarray(outputs)
    accepted = [set(int(c) for c in a) for a in accepted]
    if outputs.ndim != 2 or len(outputs) != len(accepted) or not len(outputs):
        raise DeployLabError(f"{len(accepted)} label sets for outputs of shape {outputs.shape}; "
                             "give one accepted set per output row")
    if any(not a for a in accepted):
        raise DeployLabError("an accepted label set is empty: evaluate labelled photos only")
    best = np.argsort(-outputs, axis=1, kind="stable")[:, :5]
    top1 = tuple(bool(b[0] in a) for b, a in zip(best, accepted))
    top5 = [bool(set(b.tolist()) & a) for b, a in zip(best, accepted)]
    return LabelledAccuracy(float(np.mean(top1)), float(np.mean(top5)), len(outputs), top1)


# ---------------------------------------------------------------- photos
def labelled_photo_batch(preprocessing=None) -> tuple[np.ndarray, list[tuple[int, ...]], list[str]]:
    """The labelled photos preprocessed (N, 3, H, W), their accepted label sets and filenames."""
    from deploylab.data.images import IMAGES_DIR, labelled_images
    from deploylab.data.preprocess import ImagePreprocessing

    preprocessing = preprocessing or ImagePreprocessing()
    specs = labelled_images()
    return (preprocessing.batch([IMAGES_DIR / s.filename for s in specs]),
            [s.accepted for s in specs], [s.filename for s in specs])


@dataclass(frozen=True)
class PreprocessingScore:
    """How well one preprocessing suits a model on the labelled photos."""

    name: str
    accuracy: LabelledAccuracy
    mean_correct_probability: float  # mean softmax mass on each photo's accepted classes
    mean_nll: float  # mean -log(that mass): lower is better calibrated and more confident

    def format(self) -> str:
        return (f"{self.name}: {self.accuracy.format()}, mean probability on the accepted classes "
                f"{self.mean_correct_probability:.3f}, mean NLL {self.mean_nll:.3f}")


def score_preprocessing(runner_or_path, preprocessings: dict) -> list[PreprocessingScore]:
    """Run the labelled photos through each ``{name: ImagePreprocessing}`` and score the answers,
    best (lowest NLL on the accepted classes) first."""
    from deploylab.postprocess import softmax

    scores = []
    for name, prep in preprocessings.items():
        images, accepted, _ = labelled_photo_batch(prep)
        outputs = predict(runner_or_path, images)
        probs = _probabilities(outputs) if outputs.ndim == 2 else softmax(outputs)
        mass = np.array([probs[i, list(a)].sum() for i, a in enumerate(accepted)])
        nll = float(np.mean(-np.log(np.maximum(mass, np.finfo(np.float64).tiny))))
        scores.append(PreprocessingScore(name, labelled_accuracy(outputs, accepted), float(mass.mean()), nll))
    return sorted(scores, key=lambda s: s.mean_nll)


@dataclass
class ClassifierReport:
    """An ImageNet classifier judged as a deployment: accuracy on the labelled photos, and
    (given a reference) fidelity to it over the augmented views."""

    name: str
    preprocessing: str
    accuracy: LabelledAccuracy
    view_accuracy: LabelledAccuracy | None = None
    reference: str | None = None
    verdict: FidelityVerdict | None = None

    @property
    def passed(self) -> bool:
        return self.verdict is None or self.verdict.passed

    def format(self) -> str:
        lines = [f"{self.name}, {self.preprocessing}",
                 f"  labelled photos: {self.accuracy.format()}"]
        if self.view_accuracy is not None:
            lines.append(f"  labelled views:  {self.view_accuracy.format()}")
        if self.verdict is not None:
            lines.append(f"  fidelity to {self.reference}: {self.verdict.format()}")
        return "\n".join(lines)


def evaluate_classifier(runner, preprocessing, reference=None, views: int = 320, seed: int = 0,
                        budget: FidelityBudget | None = None, batch_size: int = 32) -> ClassifierReport:
    """Accuracy of ``runner`` on the labelled photos and, with a ``reference`` runner, its
    fidelity over ``views`` augmented views (top-1 agreement, top-5 overlap, KL, max abs
    error) judged by ``budget``. Both runners see the same ``preprocessing`` outputs."""
    from deploylab.data.calibration import labelled_evaluation_views

    images, accepted, _ = labelled_photo_batch(preprocessing)
    report = ClassifierReport(runner.name, preprocessing.name,
                              labelled_accuracy(predict(runner, images, batch_size), accepted))
    if reference is not None:
        evaluation = labelled_evaluation_views(views, seed=seed, preprocessing=preprocessing)
        candidate = predict(runner, evaluation.images, batch_size)
        report.view_accuracy = labelled_accuracy(candidate, evaluation.accepted)
        report.reference = reference.name
        report.verdict = check_fidelity(fidelity(predict(reference, evaluation.images, batch_size), candidate),
                                        budget)
    return report
