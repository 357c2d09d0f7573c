"""ONNX files on disk: loading and saving graphs, the cache of rewritten graphs, cutting a merged decoder.

Every load-time rewrite (attention outputs, the in-place KV cache, residual points, the matmul accuracy
level, the codec's latent cut) goes through :func:`cached`: the rewritten file goes to ``$MGLAB_CACHE``
(default ``~/.cache/mglab``) under a name derived from the source file's path, size and modification time
and the rewrite's tag, built once, and only when something asks for it. Otherwise the untouched graph runs.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ..core.fileio import atomic_write


class Unmatched(ValueError):
    """The graph is not the shape a rewrite knows; the caller keeps the untouched graph."""


def cache_dir() -> Path:
    """``$MGLAB_CACHE``, default ``~/.cache/mglab``."""
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


def save(model, dst: Path) -> None:
    """Write ``model`` to ``dst`` atomically (a temporary name, then a rename); weights over 1.5 GB go to
    ``dst.data`` (protobuf's 2 GB limit)."""
    import onnx

    external = sum(len(t.raw_data) for t in model.graph.initializer) > 1_500_000_000
    kw = dict(save_as_external_data=True, location=dst.name + ".data", all_tensors_to_one_file=True) if external else {}
    atomic_write(dst, lambda tmp: onnx.save(model, tmp, **kw))


def branch_model(model, branch: str):
    """One branch of the merged decoder's ``If`` as a model of its own: ``then_branch`` (the cached step: logits
    and the self-attention cache) or ``else_branch`` (the first step: logits and both caches)."""
    from onnx import helper

    g = model.graph
    ifs = [n for n in g.node if n.op_type == "If"]
    if len(ifs) != 1:
        raise Unmatched(f"the merged graph has {len(ifs)} top-level If nodes, expected one")
    sub = next(a.g for a in ifs[0].attribute if a.name == branch)
    after = set(ifs[0].output)                              # nodes downstream of the If stay behind
    before = []
    for n in g.node:
        if n is ifs[0] or after.intersection(n.input):
            after.update(n.output)
        else:
            before.append(n)
    nodes = before + list(sub.node)
    used = {name for n in nodes for name in n.input}
    keep = ".decoder." if branch == "then_branch" else "present."
    outputs = [o for o in sub.output if o.name == "logits" or keep in o.name]
    new = helper.make_graph(nodes, f"decoder_{branch}",
                            [i for i in g.input if i.name in used], outputs,
                            [t for t in g.initializer if t.name in used] + list(sub.initializer))
    out = helper.make_model(new, opset_imports=list(model.opset_import), ir_version=model.ir_version)
    prune(out.graph)
    return out


def prune(g) -> None:
    """Remove nodes whose outputs nothing reads, and initializers and value_info nothing uses."""
    needed = {o.name for o in g.output}
    kept = []
    for n in reversed(list(g.node)):
        if any(o in needed for o in n.output):
            kept.append(n)
            needed.update(n.input)
            for a in n.attribute:           # subgraphs read outer names too
                if a.g is not None and a.g.node:
                    needed.update(x for m in a.g.node for x in m.input)
    del g.node[:]
    g.node.extend(reversed(kept))
    inits = [t for t in g.initializer if t.name in needed]
    del g.initializer[:]
    g.initializer.extend(inits)
    infos = [v for v in g.value_info if v.name in needed]
    del g.value_info[:]
    g.value_info.extend(infos)
