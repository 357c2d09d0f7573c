"""The ground floor: small pieces every room uses. Imports nothing from mglab outside ``core``.

::

    config.py     MusicGenConfig: config.json and generation_config.json read, defaults filled in
    settings.py   the generation parameters declared once (types, defaults, ranges, help) and resolved
    masked_settings.py  the same for a masked (MAGNeT) model: decoding_steps, max/min_cfg_coef, span_len
    hooks.py      hook names and points, Hook, HookRegistry: what every stage calls its hooks through
    numeric.py    the one softmax and log-softmax
    fileio.py     atomic writes: a temporary name, then a rename
    progress.py   a progress bar over decoding steps, or nothing
    fingerprint.py  what identifies an object across processes (sweep row keys)
"""
