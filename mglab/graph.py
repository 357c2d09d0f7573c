"""ONNX graph rewrites done at load time, cached on disk.

The published exports return logits and the KV cache, not attention probabilities. To show them, the
softmax output of each layer's self- and cross-attention is made an extra graph output, named
``attentions.{i}.self`` ``[H*B, heads, q, pos]`` and ``attentions.{i}.cross`` ``[H*B, heads, q, text_len]``.
In the merged decoder the softmaxes live inside both branches of the ``If``: each branch gets the outputs
(in the same order) and so do the ``If`` node and the graph.

The rewritten file goes to ``$MGLAB_CACHE`` (default ``~/.cache/mglab``) under a name derived from the source
file's path, size and modification time; it is only built, and only loaded, when an attention hook is asked
for. Otherwise the untouched graph runs.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from .fileio import atomic_write

SOFTMAX = re.compile(r"layers\.(\d+)/(self_attn|encoder_attn)/")


def cache_dir() -> Path:
    return Path(os.environ.get("MGLAB_CACHE", Path.home() / ".cache" / "mglab"))


def cached(src: Path, tag: str, build) -> Path:
    """Path of ``src`` rewritten by ``build(src, dst)``, built once into ``$MGLAB_CACHE/graphs``: the name is
    derived from the source's path, size and modification time and the rewrite's ``tag``."""
    src = Path(src).absolute()      # not resolved: a Hub snapshot's symlinks name the external-data files
    dst = cached_path(src, tag)
    if not dst.is_file():
        dst.parent.mkdir(parents=True, exist_ok=True)
        build(src, dst)
    return dst


def cached_path(src: Path, tag: str) -> Path:
    """Where :func:`cached` keeps ``src`` rewritten by ``tag``."""
    return cache_dir() / "graphs" / f"{cache_name(src, tag)}.{tag}.onnx"


def cache_name(src: Path, *versions: str) -> str:
    """``<stem>-<key>``: a cache entry's name for ``src``, the key covering its path, size and modification
    time and ``versions`` (what else the entry depends on)."""
    src = Path(src).absolute()
    st = src.stat()
    key = "|".join([str(src), str(st.st_size), str(st.st_mtime_ns), *versions])
    return f"{src.stem}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def load(src: Path):
    """``onnx.load`` that also reads external data through symlinks (a Hub snapshot's files are symlinks
    into its blob store, which onnx's own loader refuses)."""
    import onnx

    model = onnx.load(str(src), load_external_data=False)
    graphs = [model.graph] + [a.g for n in model.graph.node for a in n.attribute if a.g is not None and a.g.node]
    for t in (t for g in graphs for t in g.initializer):
        if t.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in t.external_data}
        with open(os.path.realpath(Path(src).parent / info["location"]), "rb") as f:
            f.seek(int(info.get("offset", 0)))
            t.raw_data = f.read(int(info["length"])) if "length" in info else f.read()
        del t.external_data[:]
        t.data_location = onnx.TensorProto.DEFAULT
    return model


def with_attention(src: Path) -> Path:
    """Path of ``src`` rewritten to output attention probabilities, building it once."""
    return cached(src, "attn-v1", _rewrite)


def attention_outputs(graph) -> list[tuple[str, str]]:
    """``[(tensor_name, output_name), ...]`` for the attention softmaxes of one (sub)graph, layer order."""
    found = []
    for node in graph.node:
        if node.op_type != "Softmax":
            continue
        m = SOFTMAX.search(node.name)
        if m:
            kind = "self" if m.group(2) == "self_attn" else "cross"
            found.append((int(m.group(1)), kind, node.output[0]))
    found.sort(key=lambda f: (f[0], f[1] != "self"))
    return [(tensor, f"attentions.{layer}.{kind}") for layer, kind, tensor in found]


def _rewrite(src: Path, dst: Path) -> None:
    from onnx import TensorProto, helper

    model = load(src)
    graph = model.graph
    if_nodes = [n for n in graph.node if n.op_type == "If"]
    if if_nodes:                      # merged decoder: the softmaxes are inside both branches
        node = if_nodes[0]
        names = None
        for attr in node.attribute:
            outs = attention_outputs(attr.g)
            for tensor, _ in outs:
                attr.g.output.append(helper.make_tensor_value_info(tensor, TensorProto.FLOAT, None))
            branch_names = [name for _, name in outs]
            if names is not None and branch_names != names:
                raise ValueError(f"{src.name}: the If branches have different attention softmaxes")
            names = branch_names
        node.output.extend(names)
    else:
        names = []
        for tensor, name in attention_outputs(graph):
            graph.node.append(helper.make_node("Identity", [tensor], [name], name=f"expose_{name}"))
            names.append(name)
    if not names:
        raise ValueError(f"{src.name}: no attention softmax found to expose")
    for name in names:
        graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    save(model, dst)


def save(model, dst: Path) -> None:
    """Write ``model`` to ``dst`` atomically (a temporary name, then a rename); weights over 1.5 GB go to
    ``dst.data`` (protobuf's 2 GB limit)."""
    import onnx

    external = sum(len(t.raw_data) for t in model.graph.initializer) > 1_500_000_000
    kw = dict(save_as_external_data=True, location=dst.name + ".data", all_tensors_to_one_file=True) if external else {}
    atomic_write(dst, lambda tmp: onnx.save(model, tmp, **kw))


def codebook_lookups(g, k: int) -> list:
    """The ``Gather`` nodes that look up a codec's ``k`` codebooks: the first ``k`` in node order that index
    rank-2 initializers of one shape (RVQ decoding looks the codes up first; later lookups, such as a
    synthesizer's instrument tables, are not codebooks). Empty when there are none."""
    inits = {t.name: tuple(t.dims) for t in g.initializer}
    gathers = [n for n in g.node if n.op_type == "Gather" and len(inits.get(n.input[0], ())) == 2]
    for i in range(len(gathers) - k + 1):
        if len({inits[n.input[0]] for n in gathers[i:i + k]}) == 1:
            return gathers[i:i + k]
    return []


def codebook_tables(src: Path, k: int) -> list:
    """The ``k`` codebook tables of the codec graph ``src`` (:func:`codebook_lookups`) as numpy arrays."""
    from onnx import numpy_helper

    g = load(src).graph
    inits = {t.name: t for t in g.initializer}
    return [numpy_helper.to_array(inits[n.input[0]]) for n in codebook_lookups(g, k)]


def latent_split(src: Path, k: int) -> tuple[Path, Path]:
    """A codec graph cut at its latent, the sum of its ``k`` codebook vectors ``[B, D, frames]``: the paths of
    ``codes -> latent`` (output ``latent``) and ``latent, codes -> audio`` (built once, cached)."""
    return cached(src, "latent-v1-codes", lambda s, d: _cut(s, d, k, first=True)), \
        cached(src, "latent-v1-audio", lambda s, d: _cut(s, d, k, first=False))


def find_latent(g, k: int) -> str:
    """The first tensor that sums all ``k`` codebook lookups (:func:`codebook_lookups`), taken past a
    ``[0, 2, 1]`` Transpose to ``[B, D, frames]``."""
    lookups = codebook_lookups(g, k)
    if not lookups:
        raise ValueError(f"no {k} codebook tables found (plain Gather initializers of rank 2)")
    depends = {n.output[0]: {j} for j, n in enumerate(lookups)}
    for n in g.node:
        seen = set().union(depends.get(n.output[0], set()), *(depends.get(i, set()) for i in n.input))
        for o in n.output:
            depends[o] = seen
        if len(seen) == k and n.op_type in ("Add", "Sum"):
            readers = [m for m in g.node if n.output[0] in m.input]
            perm = [list(a.ints) for m in readers for a in m.attribute if m.op_type == "Transpose" and a.name == "perm"]
            return readers[0].output[0] if len(readers) == 1 and perm == [[0, 2, 1]] else n.output[0]
    raise ValueError("no node sums every codebook's lookup")


def _cut(src: Path, dst: Path, k: int, first: bool) -> None:
    from onnx import TensorProto, helper

    model = load(src)
    g = model.graph
    latent = find_latent(g, k)
    stop, wanted = ({"audio_codes"}, [latent]) if first else ({"audio_codes", latent}, ["audio_values"])
    producer = {o: n for n in g.node for o in n.output}
    needed, todo, keep = set(), list(wanted), set()
    while todo:                                       # walk back from the outputs to the stop tensors
        t = todo.pop()
        if t in needed or t in stop or t not in producer:
            continue
        needed.add(t)
        n = producer[t]
        keep.add(id(n))
        todo += [i for i in n.input if i]
    rename = lambda x: "latent" if x == latent else x                              # noqa: E731
    nodes = [helper.make_node(n.op_type, [rename(i) for i in n.input], [rename(o) for o in n.output],
                              name=n.name, domain=n.domain, **{a.name: helper.get_attribute_value(a)
                                                               for a in n.attribute})
             for n in g.node if id(n) in keep]
    used = {i for n in nodes for i in n.input}
    latent_info = helper.make_tensor_value_info("latent", TensorProto.FLOAT, ["batch", "dim", "frames"])
    inputs = [i for i in g.input if i.name in used or i.name == "audio_codes"] + ([] if first else [latent_info])
    outputs = [latent_info] if first else [o for o in g.output if o.name == "audio_values"]
    part = helper.make_graph(nodes, f"{g.name}_{'codes_to_latent' if first else 'latent_to_audio'}", inputs, outputs,
                             [t for t in g.initializer if t.name in used])
    save(helper.make_model(part, opset_imports=list(model.opset_import), ir_version=model.ir_version), dst)
