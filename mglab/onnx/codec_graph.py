"""The codec graph seen from inside: its codebook tables, and the graph cut at its latent.

EnCodec (and the nano model's synthesizer) decode codes by looking up ``k`` codebooks and summing them into a
latent ``[B, D, frames]``; :func:`latent_split` cuts the graph there so the latent can be read and edited
(``codec.hook_latent``).
"""

from __future__ import annotations

from pathlib import Path

from .graphfile import cached, load, save


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
