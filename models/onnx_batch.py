"""Make an ONNX graph exported with batch 1 run on any batch size.

Exporters often bake the batch into the graph: ``yolox_nano.onnx`` declares ``images [1,3,416,416]``
and reshapes its three head outputs with constants ``[1, 85, -1]``. Making only the input dimension
symbolic is not enough, because those Reshapes would still fold the whole batch into one image. The
rewrite therefore (1) gives the graph inputs and outputs a symbolic first dimension and (2) replaces the
shape constant of every Reshape that acts on input-dependent data with ``[-1, *static_rest]``, where the
rest comes from shape inference on the original graph (yolox: ``[-1,85,2704]``, ``[-1,85,676]``,
``[-1,85,169]``). The rest must be static because ``[-1, 85, -1]`` would be ambiguous.

Other batch-baking ops (Expand/Tile/ConstantOfShape with literal shapes, Slices on axis 0) are not
rewritten; ``check_batch_equivalence`` runs the rewritten graph at batch > 1 against batch-1 runs of the
original and rejects a rewrite that changes any output, so such a graph fails loudly instead of silently.

Rewritten graphs are cached on disk by the sha256 of the source file, so each model is rewritten and
checked once per machine.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from models.data import sha256_of

BATCH_DIM = "batch"
_REWRITE_VERSION = 1  # bump when the rewrite changes, so stale cache files are not reused


class BatchRewriteError(RuntimeError):
    """The graph cannot be made batch-dynamic by this rewrite (or the result changed its outputs)."""


def default_onnx_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cctv-analytics" / "onnx"


def _graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    initializers = {init.name for init in model.graph.initializer}
    return [value for value in model.graph.input if value.name not in initializers]


def has_fixed_batch(model: onnx.ModelProto) -> bool:
    """True when some graph input declares a literal first dimension (the batch is baked in)."""
    return any(
        value.type.tensor_type.shape.dim and value.type.tensor_type.shape.dim[0].HasField("dim_value")
        for value in _graph_inputs(model)
    )


def _static_shapes(model: onnx.ModelProto) -> dict[str, list[int | None]]:
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes: dict[str, list[int | None]] = {}
    for value in (*inferred.graph.value_info, *inferred.graph.output):
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    return shapes


def _input_dependent(model: onnx.ModelProto) -> set[str]:
    """Names of tensors computed from the graph inputs (nodes are topologically sorted in ONNX)."""
    dependent = {value.name for value in _graph_inputs(model)}
    for node in model.graph.node:
        if any(name in dependent for name in node.input):
            dependent.update(node.output)
    return dependent


def make_batch_dynamic(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` whose first input/output dimension is symbolic and whose Reshapes follow it."""
    if not has_fixed_batch(model):
        return model
    shapes = _static_shapes(model)
    dependent = _input_dependent(model)
    constants = {init.name for init in model.graph.initializer}
    constants.update(n.output[0] for n in model.graph.node if n.op_type == "Constant")

    out = onnx.ModelProto()
    out.CopyFrom(model)
    replaced: set[str] = set()
    for index, node in enumerate(out.graph.node):
        if node.op_type != "Reshape" or node.input[0] not in dependent:
            continue
        if node.input[1] not in constants:
            continue  # shape computed at run time (Shape -> Gather -> Concat): follows the batch already
        static = shapes.get(node.output[0])
        if not static or any(d is None or d <= 0 for d in static[1:]):
            raise BatchRewriteError(
                f"Reshape {node.name or index} -> {node.output[0]}: shape inference gives {static}, "
                "need a static shape after the batch dimension"
            )
        # A fresh initializer per node: the original constant may be shared with other nodes.
        name = f"{node.input[1]}__dynbatch_{index}"
        out.graph.initializer.append(numpy_helper.from_array(np.array([-1, *static[1:]], np.int64), name))
        replaced.add(node.input[1])
        node.input[1] = name

    used = {name for node in out.graph.node for name in node.input}
    stale = [init for init in out.graph.initializer if init.name in replaced and init.name not in used]
    for init in stale:  # ORT warns about unused initializers
        out.graph.initializer.remove(init)
    for value in (*_graph_inputs(out), *out.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].Clear()
            dims[0].dim_param = BATCH_DIM
    del out.graph.value_info[:]  # intermediate shapes recorded with batch 1 would contradict the new graph
    onnx.checker.check_model(out)
    return out


def check_batch_equivalence(
    original: bytes | str | Path, rewritten: bytes | str | Path, batch: int = 2, atol: float = 1e-3
) -> None:
    """Run the rewritten graph on ``batch`` random inputs and each input alone through the original.

    Raises ``BatchRewriteError`` naming the output and the largest difference if any output differs.
    """
    import onnxruntime as ort  # deferred: the rewrite itself needs only onnx

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # a one-off check; do not grab cores from running decoders
    providers = ["CPUExecutionProvider"]
    before = ort.InferenceSession(_as_source(original), options, providers=providers)
    after = ort.InferenceSession(_as_source(rewritten), options, providers=providers)
    rng = np.random.default_rng(0)
    feeds = {}
    for value in before.get_inputs():
        if value.type != "tensor(float)" or not all(isinstance(d, int) for d in value.shape):
            raise BatchRewriteError(f"cannot build a test input for {value.name} {value.type} {value.shape}")
        feeds[value.name] = rng.uniform(0, 255, (batch, *value.shape[1:])).astype(np.float32)
    batched = after.run(None, feeds)
    singles = [before.run(None, {k: v[i : i + 1] for k, v in feeds.items()}) for i in range(batch)]
    for index, meta in enumerate(after.get_outputs()):
        expected = np.concatenate([single[index] for single in singles])
        if batched[index].shape != expected.shape:
            raise BatchRewriteError(
                f"output {meta.name}: batched {batched[index].shape}, per-image {expected.shape}"
            )
        worst = float(np.abs(batched[index] - expected).max(initial=0.0))
        if worst > atol:
            raise BatchRewriteError(f"output {meta.name} differs from per-image runs by up to {worst:.3g}")


def _as_source(model: bytes | str | Path) -> bytes | str:
    return model if isinstance(model, bytes) else str(model)


def dynamic_batch_model_path(source: Path, cache_dir: Path | None = None) -> Path:
    """Path of a checked batch-dynamic copy of ``source``: ``<cache>/<sha256>-dynbatch-v1.onnx``.

    Returns ``source`` itself when its batch is already symbolic. Concurrent callers (several replicas
    starting at once) each write a temporary file and rename it, so readers never see a partial file.
    """
    cache_dir = cache_dir or default_onnx_cache_dir()
    target = cache_dir / f"{sha256_of(source)}-dynbatch-v{_REWRITE_VERSION}.onnx"
    if target.is_file():
        return target
    model = onnx.load(str(source))
    if not has_fixed_batch(model):
        return source
    payload = make_batch_dynamic(model).SerializeToString()
    check_batch_equivalence(source, payload)
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=cache_dir, suffix=".tmp", delete=False) as tmp:
        tmp_path = Path(tmp.name)
        try:
            tmp.write(payload)
        except OSError:
            tmp_path.unlink(missing_ok=True)
            raise
    tmp_path.replace(target)
    return target
