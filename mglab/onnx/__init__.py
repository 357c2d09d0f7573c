"""Files and graphs: an export on disk, the sessions that run it, and the rewrites done at load time.

Imports ``core`` only. ::

    modelfiles.py      find a model's files, whatever the layout (Xenova, optimum, gabotechs) and variant
    hub.py             Hub ids: download only the files a variant needs
    spec.py            LoadSpec, how a model was loaded; locate() checks it and finds the files
    session.py         onnxruntime.InferenceSession with outputs by name, providers, optimized copies
    graphfile.py       load/save a graph, the cache of rewritten graphs, a merged decoder's branch cut out
    attention.py       rewrite: attention probabilities as outputs
    inplace_kv.py      rewrite: the self-attention KV cache as a buffer written in place
    fuse.py            rewrite: residual add + layer norm as one SkipLayerNormalization
    residual_graph.py  rewrite: the residual stream's points as outputs and replaceable inputs
    codec_graph.py     the codec graph's codebook tables, and the graph cut at its latent
    accuracy.py        rewrite: the accuracy level of 4-bit matmuls
    quantize.py        quantized variants made the way the published files were
    export.py          python -m mglab export: a transformers checkpoint -> this layout
    export_melody.py   python -m mglab export of a MusicGen-Melody checkpoint (torch.onnx: condition + decoders)
    export_magnet.py   MAGNeT's masked LM (audiocraft) -> masked_lm.onnx, every stage's mask in the graph
    audiocraft_env.py  audiocraft importable here: stand-ins for the modules its LM never uses, local T5s
    magnet_checkpoint.py  python -m mglab export of an audiocraft MAGNeT checkpoint -> the masked layout
"""
