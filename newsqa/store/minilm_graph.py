"""all-MiniLM-L6-v2 as an ONNX graph, written directly in onnxruntime's fused CPU operators.

Why a hand-written graph: onnxruntime's transformers optimiser needs sympy (not installed
since onnxruntime 1.32; issue 14), and exporting from PyTorch needs torch. The BERT
encoder is small and fixed, so it is spelled out here once, node by node, from the
safetensors weights: Attention, SkipLayerNormalization and BiasGelu, the same fused
kernels the optimiser would have produced (vectors identical to it; RESULTS.md).
`embedding.py` loads, caches and runs the result; this module only builds it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import onnx

MS_DOMAIN = "com.microsoft"  # onnxruntime's contrib operators (the fused CPU kernels)
OPSET = 17


class _GraphBuilder:
    """Accumulates ONNX nodes and initializers with unique names."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def const(self, name: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        self.initializers.append(numpy_helper.from_array(value, name))
        return name

    def op(self, op_type: str, inputs: Sequence[str], domain: str = "", **attrs: Any) -> str:
        from onnx import helper

        self._count += 1
        out = f"{op_type.lower()}_{self._count}"
        node = helper.make_node(op_type, list(inputs), [out], name=out, domain=domain, **attrs)
        self.nodes.append(node)
        return out

    def layer_norm(self, x: str, prefix: str, weights: Mapping[str, np.ndarray], eps: float) -> str:
        gamma = self.const(f"{prefix}.weight", weights[f"{prefix}.weight"])
        beta = self.const(f"{prefix}.bias", weights[f"{prefix}.bias"])
        return self.op("LayerNormalization", [x, gamma, beta], axis=-1, epsilon=eps)


def _f32(value: float) -> np.ndarray:
    return np.array(value, dtype=np.float32)


def _i64(values: Sequence[int]) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def _embeddings(g: _GraphBuilder, w: Mapping[str, np.ndarray], eps: float) -> str:
    """word + position + token type 0 (single-segment input, so folded into positions)."""
    word = g.const("word_embeddings", w["embeddings.word_embeddings.weight"])
    pos_table = (
        w["embeddings.position_embeddings.weight"] + w["embeddings.token_type_embeddings.weight"][0]
    )
    positions = g.const("position_plus_type0", pos_table.astype(np.float32))
    seq_len = g.op("Shape", ["input_ids"], start=1, end=2)
    pos = g.op(
        "Slice", [positions, g.const("zero_1d", _i64([0])), seq_len, g.const("axis0", _i64([0]))]
    )
    summed = g.op("Add", [g.op("Gather", [word, "input_ids"]), pos])
    return g.layer_norm(summed, "embeddings.LayerNorm", w, eps)


def _attention(
    g: _GraphBuilder, x: str, p: str, w: Mapping[str, np.ndarray], lengths: str, heads: int
) -> str:
    """Self-attention as onnxruntime's fused CPU kernel (com.microsoft Attention).

    Q, K and V share one [hidden, 3*hidden] projection, and `lengths` (real tokens
    per row; padding is on the right) replaces BERT's additive -10000 mask.
    """
    qkv_w = np.concatenate([w[f"{p}.{part}.weight"].T for part in ("query", "key", "value")], 1)
    qkv_b = np.concatenate([w[f"{p}.{part}.bias"] for part in ("query", "key", "value")])
    weight = g.const(f"{p}.qkv_weight", np.ascontiguousarray(qkv_w))
    bias = g.const(f"{p}.qkv_bias", qkv_b)
    return g.op("Attention", [x, weight, bias, lengths], domain=MS_DOMAIN, num_heads=heads)


def _add_and_norm(
    g: _GraphBuilder, x: str, residual: str, p: str, w: Mapping[str, np.ndarray], eps: float
) -> str:
    """LayerNorm(x @ W + b + residual) with the MatMul left outside the fused kernel."""
    product = g.op("MatMul", [x, g.const(f"{p}.dense.weight_t", _t(w[f"{p}.dense.weight"]))])
    return g.op(
        "SkipLayerNormalization",
        [
            product,
            residual,
            g.const(f"{p}.LayerNorm.weight", w[f"{p}.LayerNorm.weight"]),
            g.const(f"{p}.LayerNorm.bias", w[f"{p}.LayerNorm.bias"]),
            g.const(f"{p}.dense.bias", w[f"{p}.dense.bias"]),
        ],
        domain=MS_DOMAIN,
        epsilon=eps,
    )


def _encoder_layer(
    g: _GraphBuilder,
    x: str,
    i: int,
    w: Mapping[str, np.ndarray],
    lengths: str,
    cfg: Mapping[str, Any],
) -> str:
    p = f"encoder.layer.{i}"
    eps = float(cfg["layer_norm_eps"])
    context = _attention(g, x, f"{p}.attention.self", w, lengths, int(cfg["num_attention_heads"]))
    x1 = _add_and_norm(g, context, x, f"{p}.attention.output", w, eps)
    up = g.const(f"{p}.intermediate.weight_t", _t(w[f"{p}.intermediate.dense.weight"]))
    hidden = g.op("MatMul", [x1, up])
    # exact (erf) GELU of hidden + bias, BERT's activation
    gelu = g.op(
        "BiasGelu",
        [hidden, g.const(f"{p}.intermediate.bias", w[f"{p}.intermediate.dense.bias"])],
        domain=MS_DOMAIN,
    )
    return _add_and_norm(g, gelu, x1, f"{p}.output", w, eps)


def _t(weight: np.ndarray) -> np.ndarray:
    """torch Linear stores [out, in]; MatMul wants [in, out]."""
    return np.ascontiguousarray(weight.T)


def _pool_and_normalise(g: _GraphBuilder, x: str, mask_f: str) -> str:
    """Mean over real tokens (sentence-transformers' pooling), then unit length."""
    axis1 = g.const("axis1", _i64([1]))
    mask3 = g.op("Unsqueeze", [mask_f, g.const("axis2", _i64([2]))])
    summed = g.op("ReduceSum", [g.op("Mul", [x, mask3]), axis1], keepdims=0)
    count = g.op("ReduceSum", [mask_f, axis1], keepdims=1)
    mean = g.op("Div", [summed, g.op("Max", [count, g.const("count_floor", _f32(1e-9))])])
    norm = g.op("ReduceL2", [mean], axes=[1], keepdims=1)
    return g.op("Div", [mean, g.op("Max", [norm, g.const("norm_floor", _f32(1e-12))])])


def build_bert_onnx(model_dir: Path) -> onnx.ModelProto:
    """Write the sentence-embedding graph for a BERT checkpoint in safetensors form.

    The encoder is written directly in onnxruntime's fused CPU operators (Attention,
    SkipLayerNormalization, BiasGelu), the graph its transformer optimiser would
    produce, so no optimiser (and none of its optional dependencies) runs here.
    """
    from onnx import TensorProto, helper
    from safetensors.numpy import load_file

    cfg = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    weights = load_file(str(model_dir / "model.safetensors"))
    g = _GraphBuilder()
    x = _embeddings(g, weights, float(cfg["layer_norm_eps"]))
    mask_i32 = g.op("Cast", ["attention_mask"], to=TensorProto.INT32)
    lengths = g.op("ReduceSum", [mask_i32, g.const("lengths_axis", _i64([1]))], keepdims=0)
    for i in range(int(cfg["num_hidden_layers"])):
        x = _encoder_layer(g, x, i, weights, lengths, cfg)
    mask_f = g.op("Cast", ["attention_mask"], to=TensorProto.FLOAT)
    pooled = _pool_and_normalise(g, x, mask_f)
    g.nodes.append(helper.make_node("Identity", [pooled], ["sentence_embedding"]))
    dims = ["batch", "sequence"]
    graph = helper.make_graph(
        g.nodes,
        "sentence_bert",
        [
            helper.make_tensor_value_info(n, TensorProto.INT64, dims)
            for n in ("input_ids", "attention_mask")
        ],
        [
            helper.make_tensor_value_info(
                "sentence_embedding", TensorProto.FLOAT, ["batch", int(cfg["hidden_size"])]
            )
        ],
        g.initializers,
    )
    opsets = [helper.make_opsetid("", OPSET), helper.make_opsetid(MS_DOMAIN, 1)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="newsqa")
    model.ir_version = 8
    return model


def ffn_output_matmuls(model: onnx.ModelProto, cfg: Mapping[str, Any]) -> list[str]:
    """The FFN down-projections (intermediate -> hidden): their GELU inputs have outliers."""
    shape = (int(cfg["intermediate_size"]), int(cfg["hidden_size"]))
    weights = {init.name for init in model.graph.initializer if tuple(init.dims) == shape}
    return [n.name for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in weights]


def quantise(model: onnx.ModelProto, keep_fp32: list[str], workdir: Path) -> bytes:
    """int8 dynamic quantisation: int8 weights per output channel, activations per call.

    Measured cosine to fp32 on news chunks: per-tensor weights 0.94 (useless),
    per-channel 0.994, per-channel with the FFN down-projections left in fp32 0.997
    (at some of the speed): the last is what runs.
    """
    import logging

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src, dst = workdir / "fp32.onnx", workdir / "int8.onnx"
    onnx.save_model(model, str(src))
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # it advises pre-processing on the root logger; we fused already
    try:
        quantize_dynamic(
            src,
            dst,
            weight_type=QuantType.QInt8,
            per_channel=True,
            nodes_to_exclude=keep_fp32,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    finally:
        root.setLevel(level)
    return dst.read_bytes()


