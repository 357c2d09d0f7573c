"""Looking inside a generation: what the hooks recorded, interventions, and pictures of it.

Imports ``decoding``, ``networks``, ``onnx``, ``audio`` and ``core`` (``plot``, ``explore`` and ``reports``
import matplotlib and ipywidgets when first used). ::

    activation_cache.py   ActivationCache: what run_with_cache recorded, by hook name
    interventions.py      steering vectors, activation patching, the logit lens
    activations.py        activation datasets on disk: teacher-forced clips, generations, sweeps
    probe.py              probes (scikit-learn): grouped cross-validation, the control task, layer tables
    sae.py                TopK sparse autoencoders: SAE Lens's files, encode in numpy, read and clamp features
    sae_train.py          training a TopK SAE with torch (AuxK against dead latents)
    features.py           feature pages: histogram, top clips heard, logit lens of a direction, AUROC
    distributions.py      numbers about token distributions: entropy, KL, top-1 agreement, mass kept
    plot.py               figures: waveform, spectrogram, codes, delay pattern, attention, entropy
    explore.py            an ipywidgets explorer over one generation
    reports.py            reports/index.html over every notebook's report
"""
