"""Offline batch inference with Ray Data: a folder (or glob, or list) of images -> one Parquet file of
top-k predictions, one row per image.

Ray Data reads the files' bytes (``read_binary_files``); ``map_batches`` hands batches of them to a
fixed pool of ``concurrency`` actors (:class:`ImageClassifierActor`), each with its own runner and
``threads`` engine threads, and a CPU reservation that lets the whole pool fit the cores without
actors fighting over them. Each actor decodes and preprocesses its images, runs the good ones in one
batch the model accepts, and turns a file it cannot decode into an error row instead of failing the
job. The driver gathers the rows (predictions only, a few hundred bytes an image), puts them in input
order and writes the Parquet file atomically: a failed job leaves no half-written file and replaces
nothing. Ray Data's progress (bars on a terminal, periodic log lines otherwise) shows how far it is.

Locally this starts Ray on this machine and shuts it down afterwards (an instance already running in
the process is reused). On a cluster the one-line change is ``batch_infer(..., address="ray://head:10001")``
(or setting ``RAY_ADDRESS``): the same code then spreads the actors over the cluster's nodes. The
model file and the images must then be at the same path on every node (a shared file system).
"""

from __future__ import annotations

import glob
import math
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deploylab.errors import DeployLabError
from deploylab.text import first_line

#: The suffixes of the files a folder given as ``inputs`` contributes (what OpenCV decodes).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
#: Actors per core beyond which more only add engine start-up and memory, never throughput.
MAX_ACTORS_PER_CORE = 4
#: The columns of the output file, in order.
COLUMNS = ("path", "file", "top1_index", "top1_class", "top1_score", "top_k", "error")


def result_schema():
    """The Parquet schema of the output: ``top1_score`` and each ``top_k`` entry's ``score`` are
    probabilities; a row with an ``error`` (the one-line reason) has nulls for its predictions."""
    import pyarrow as pa

    ranked = pa.struct([("index", pa.int64()), ("class", pa.string()), ("score", pa.float64())])
    return pa.schema([("path", pa.string()), ("file", pa.string()), ("top1_index", pa.int64()),
                      ("top1_class", pa.string()), ("top1_score", pa.float64()),
                      ("top_k", pa.list_(ranked)), ("error", pa.string())])


@dataclass(frozen=True)
class BatchInferReport:
    """What a batch job did: ``rows`` images (``errors`` of them could not be read) in ``seconds`` of
    wall time (the Ray Data job and the write, not Ray's start), written to ``output``."""

    output: Path
    rows: int
    errors: int
    seconds: float
    backend: str
    batch_size: int
    concurrency: int
    threads: int

    @property
    def images_per_second(self) -> float:
        """Images (predicted or refused) per second of wall time."""
        return self.rows / self.seconds if self.seconds > 0 else math.inf

    def format(self) -> str:
        """Two lines: what was done and how fast, then how it ran."""
        refused = f"; {self.errors} could not be read (see the error column)" if self.errors else ""
        return (f"batch-infer: {self.rows} images in {self.seconds:.1f} s ({self.images_per_second:.1f} images/s) "
                f"-> {self.output}{refused}\n"
                f"  {self.backend}, {self.concurrency} actor(s) x {self.threads} thread(s), "
                f"batches of up to {self.batch_size}")


# ---------------------------------------------------------------- what to read
def image_files(inputs: str | Path | Iterable[str | Path]) -> list[Path]:
    """The files ``inputs`` names, as absolute paths: a folder's image files (by suffix, see
    :data:`IMAGE_SUFFIXES`; hidden ones skipped), sorted; a glob pattern's matching files, sorted; one
    file; or a list of files in its order (repeats dropped). Nothing found is a DeployLabError."""
    if isinstance(inputs, (str, os.PathLike)):
        text = os.fspath(inputs)
        path = Path(text)
        if path.is_dir():
            files = sorted(p for p in path.iterdir()
                           if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
            where = f"the folder {text!r} has no image files ({', '.join(IMAGE_SUFFIXES)})"
        elif path.is_file():
            files = [path]
        elif any(c in text for c in "*?["):
            files = sorted(Path(p) for p in glob.glob(text, recursive=True) if os.path.isfile(p))
            where = f"no files match the pattern {text!r}"
        else:
            raise DeployLabError(f"inputs {text!r} is not a file, a folder or a glob pattern; give a folder of "
                                 "images, a pattern such as 'photos/*.jpg', or a list of image files")
        if not files:
            raise DeployLabError(f"{where}; give a folder of images, a pattern such as 'photos/*.jpg', "
                                 "or a list of image files")
    else:
        if isinstance(inputs, bytes) or not isinstance(inputs, Iterable):
            raise DeployLabError(f"inputs must be a folder, a glob pattern or a list of paths, got "
                                 f"{type(inputs).__name__}")
        files = [Path(os.fspath(p)) for p in inputs]
        if not files:
            raise DeployLabError("inputs is an empty list; give at least one image file")
        missing = [p for p in files if not p.is_file()]
        if missing:
            what = "is a folder" if missing[0].is_dir() else "does not exist"
            others = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise DeployLabError(f"input {str(missing[0])!r} {what}{others}; give the paths of image files")
    return [Path(p) for p in dict.fromkeys(os.path.abspath(p) for p in files)]


# ---------------------------------------------------------------- how many cores each actor gets
def check_concurrency(concurrency: int, cores: float) -> None:
    """Refuse an actor count that is not a positive integer, or more than
    :data:`MAX_ACTORS_PER_CORE` per core of ``cores``."""
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise DeployLabError(f"concurrency must be a positive integer (actors, each with its own runner), "
                             f"got {concurrency!r}")
    limit = max(1, int(cores * MAX_ACTORS_PER_CORE))
    if concurrency > limit:
        raise DeployLabError(f"concurrency {concurrency} is more than {MAX_ACTORS_PER_CORE} actors per core on "
                             f"{cores:g} cores: more only add engine start-up and memory; use {limit} or fewer "
                             "(and more threads per actor)")


def cpu_share(node_cpus: list[float], concurrency: int) -> float:
    """The CPUs to reserve for each of ``concurrency`` actors so that all of them fit on nodes with
    ``node_cpus`` cores: the largest share, at most an even split of all cores, that places every actor
    (on one node, ``cores / concurrency``). Ray then never leaves an actor waiting for cores another
    holds, and no two actors count on the same core."""
    nodes = [c for c in node_cpus if c > 0]
    if not nodes:
        raise DeployLabError("the Ray cluster has no CPUs to run actors on; add nodes with CPUs")
    even = sum(nodes) / concurrency
    candidates = sorted({c / k for c in nodes for k in range(1, concurrency + 1) if c / k <= even + 1e-9},
                        reverse=True)
    for share in candidates:
        if sum(math.floor(c / share + 1e-9) for c in nodes) >= concurrency:
            return share
    return min(nodes) / concurrency  # not reached: c / concurrency always places them all


def _ray_node_cpus(ray) -> list[float]:
    # ray.nodes() is a developer API; a single figure for the whole cluster is the fallback.
    try:
        cpus = [float(n.get("Resources", {}).get("CPU", 0)) for n in ray.nodes() if n.get("Alive")]
    except Exception:  # noqa: BLE001 (an API change here must not stop the job)
        cpus = []
    return cpus or [float(ray.cluster_resources().get("CPU", os.cpu_count() or 1))]


# ---------------------------------------------------------------- the actor
def _prediction_columns(scores: np.ndarray, k: int, classes: list[str] | None) -> list[dict]:
    from deploylab.postprocess import top_k

    rows = []
    for ranked in top_k(scores, k, classes):
        best = ranked[0]
        rows.append({"top1_index": best.index, "top1_class": best.label, "top1_score": best.probability,
                     "top_k": [{"index": p.index, "class": p.label, "score": p.probability} for p in ranked]})
    return rows


class ImageClassifierActor:
    """One Ray Data actor: its own runner of ``backend`` on ``model`` (``options`` as for
    ``make_runner``), called on batches of ``{"path", "bytes"}`` rows; returns one result row each
    (see :func:`result_schema`), in the batch's order."""

    def __init__(self, backend: str, model: str, options: dict, batch_size: int, top_k: int):
        from deploylab.backends.registry import make_runner
        from deploylab.serve.requests import class_names, preprocessing_for_model, serving_batch

        self.runner = make_runner(backend, model, **options).activate()
        spec = self.runner.inputs[0]
        self.prep, _how = preprocessing_for_model(model, spec)
        self.smallest = serving_batch(self.runner, batch_size)
        self.input_name, self.dtype = spec.name, np.dtype(spec.dtype)
        output = self.runner.outputs[0]
        self.output_name = output.name
        n_classes = output.shape[-1] if isinstance(output.shape[-1], int) else None
        self.classes = class_names(model, n_classes)
        self.k = top_k

    def __call__(self, batch: dict):
        import pyarrow as pa

        from deploylab.data.preprocess import ImagePreprocessing
        from deploylab.serve.requests import stack_batch

        paths = [str(p) for p in batch["path"]]
        rows = [{"path": p, "file": os.path.basename(p), "error": None} for p in paths]
        samples, good = [], []
        for index, (path, data) in enumerate(zip(paths, batch["bytes"])):
            # One file that cannot be read costs its row, never the job: whatever decoding or
            # preprocessing raises on it becomes that row's reason.
            try:
                image = ImagePreprocessing.decode(bytes(data), f"image {os.path.basename(path)!r}")
                samples.append(self.prep(image).astype(self.dtype, copy=False))
                good.append(index)
            except Exception as exc:  # noqa: BLE001
                reason = first_line(exc)
                rows[index]["error"] = reason if isinstance(exc, DeployLabError) else f"{type(exc).__name__}: {reason}"
        if samples:
            outputs = self.runner.infer({self.input_name: stack_batch(samples, self.smallest)})
            scores = np.asarray(outputs[self.output_name])[: len(samples)].reshape(len(samples), -1)
            for index, prediction in zip(good, _prediction_columns(scores, self.k, self.classes)):
                rows[index].update(prediction)
        return pa.Table.from_pylist(rows, schema=result_schema())


# ---------------------------------------------------------------- the job
def _check_model(model: str | Path, backend: str | None, threads: int | None, batch_size: int, top_k: int) -> str:
    """The backend's name, after loading the model once on the driver and checking everything a user
    can get wrong about it (batch size within its bounds, an image classifier), before any actor starts."""
    from deploylab.backends.registry import backend_for_artifact, make_runner, spec_for
    from deploylab.serve.requests import preprocessing_for_model, serving_batch

    path = Path(model)
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise DeployLabError(f"model {str(path)!r} {what}; give an .onnx file (deploylab export) or a built "
                             ".xml/.plan (deploylab build)")
    spec = spec_for(backend or backend_for_artifact(path))
    for value, what in ((batch_size, "batch_size"), (top_k, "top_k"), (threads, "threads")):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise DeployLabError(f"{what} must be a positive integer, got {value!r}")
    runner = make_runner(spec.name, path, **spec.runner_options(threads=threads))
    try:
        inputs = runner.inputs
        try:
            serving_batch(runner, batch_size)
        except DeployLabError as exc:
            raise DeployLabError(str(exc).replace("--max-batch", "batch size")) from None
        prep, _how = preprocessing_for_model(path, inputs[0])
        if prep is None:
            raise DeployLabError(f"{path.name} does not take images: its input is {inputs[0].describe()}, and "
                                 "images are preprocessed only for square 3-channel inputs; batch inference "
                                 "reads image files, so give an image classifier")
        outputs = runner.outputs
        if not outputs or len(outputs[0].shape) != 2:
            shown = outputs[0].describe() if outputs else "none"
            raise DeployLabError(f"{path.name}'s first output is {shown}, not (batch, classes) scores; batch "
                                 "inference ranks classes: give an image classifier")
    finally:
        runner.deactivate()
    return spec.name


def batch_infer(model: str | Path, inputs: str | Path | Iterable[str | Path], output: str | Path, *,
                backend: str | None = None, batch_size: int = 16, concurrency: int = 1,
                threads: int | None = None, top_k: int = 5, address: str | None = None) -> BatchInferReport:
    """Classify every image of ``inputs`` with ``model`` on Ray Data; write one Parquet file at ``output``.

    ``inputs``: a folder (its image files), a glob pattern or a list of files (see :func:`image_files`).
    ``backend``: default the one that runs the model file (``.onnx`` -> onnxruntime, ``.xml`` ->
    openvino, ``.plan`` -> tensorrt). ``batch_size``: images per inference, within the model's batch
    bounds (a smaller last batch is padded when the model needs it). ``concurrency``: actors, each with
    its own runner of ``threads`` engine threads (default: the cores divided among the actors).
    ``top_k``: classes kept per image. ``address``: a Ray cluster to run on (default ``RAY_ADDRESS``,
    else a local Ray started for the job and shut down after it).

    The output has the columns :data:`COLUMNS` (see :func:`result_schema`), one row per input file in
    input order; a file that cannot be decoded has its reason in ``error`` and no prediction. The file
    appears only when the job completes. Everything a user can get wrong is refused before Ray starts.
    """
    from deploylab.backends.registry import spec_for
    from deploylab.paths import check_output_path, replace_when_done
    from deploylab.serve.ray_local import ray_module, start_ray

    output = check_output_path(output)
    files = image_files(inputs)
    if str(output.resolve()) in {str(p.resolve()) for p in files}:
        raise DeployLabError(f"output {str(output)!r} is one of the inputs; write the results to another path")
    if not (address or os.environ.get("RAY_ADDRESS")):  # a cluster's cores are known once connected
        check_concurrency(concurrency, os.cpu_count() or 1)
    name = _check_model(model, backend, threads, batch_size, top_k)

    ray_module()  # sets Ray's switches, or names what to install
    import pyarrow.parquet as pq  # Ray Data's own dependency
    import ray.data

    started = start_ray(address)
    try:
        node_cpus = _ray_node_cpus(ray)
        check_concurrency(concurrency, sum(node_cpus))
        share = cpu_share(node_cpus, concurrency)
        threads = threads or max(1, math.floor(share + 1e-9))
        spec = spec_for(name)
        options = spec.runner_options(threads=threads if spec.thread_option else None)
        began = time.perf_counter()
        # Reading only moves bytes into the object store: it reserves no core, so it never waits for
        # the actors to give theirs back (they hold them for the whole job).
        dataset = ray.data.read_binary_files([str(p) for p in files], include_paths=True, num_cpus=0)
        dataset = dataset.map_batches(
            ImageClassifierActor, batch_size=batch_size, batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=concurrency), num_cpus=share,
            fn_constructor_kwargs=dict(backend=name, model=str(Path(model).resolve()), options=options,
                                       batch_size=batch_size, top_k=top_k),
            udf_modifying_row_count=False)
        table = _gather(ray, dataset, files)
        with replace_when_done(output, suffix=".parquet") as partial:
            pq.write_table(table.replace_schema_metadata({"deploylab.model": str(model), "deploylab.backend": name}),
                           partial)
        seconds = time.perf_counter() - began
    finally:
        if started:
            ray.shutdown()
    errors = table.num_rows - table.column("error").null_count
    return BatchInferReport(output=output, rows=table.num_rows, errors=errors, seconds=seconds, backend=name,
                            batch_size=batch_size, concurrency=concurrency, threads=threads)


def _deploylab_reason(exc: BaseException) -> str | None:
    """The message of the DeployLabError behind a Ray error, or None: from the chain of causes, or, for
    an actor that died in ``__init__`` (Ray keeps only the text of its traceback), from that text."""
    cause = exc
    while cause is not None:
        if isinstance(cause, DeployLabError):
            return first_line(cause)
        cause = getattr(cause, "cause", None) or cause.__cause__
    said = re.findall(r"^deploylab\.errors\.\w+: (.+)$", str(exc), flags=re.MULTILINE)
    return said[-1].strip() if said else None


def _gather(ray, dataset, files: list[Path]):
    """Run the job; its rows as one table in the order of ``files``. A DeployLabError raised inside
    an actor (a model missing on a cluster node) comes out as itself, one line."""
    import pyarrow as pa

    try:
        tables = list(dataset.iter_batches(batch_format="pyarrow", batch_size=None))
    except ray.exceptions.RayError as exc:
        reason = _deploylab_reason(exc)
        if reason is None:
            raise
        raise DeployLabError(f"the batch job failed in an actor: {reason}") from None
    table = pa.concat_tables(tables).cast(result_schema()) if tables else result_schema().empty_table()
    order = {str(p): i for i, p in enumerate(files)}
    positions = [order.get(p, len(files)) for p in table.column("path").to_pylist()]
    if sorted(positions) != list(range(len(files))):
        raise RuntimeError(f"Ray Data returned {table.num_rows} rows for {len(files)} files")
    return table.take(np.argsort(positions, kind="stable"))
