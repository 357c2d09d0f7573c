"""What works on any audio: the words of musical attributes and measuring them from a waveform.

Imports ``core`` only. ::

    vocabulary.py   the attribute words (register, tempo, key, mode, instrument, dynamics, figure) and a
                    prompt parser
    evaluate.py     measure attributes from audio (pitch, onsets, key, instrument, loudness); adherence
    chroma.py       the melody condition: transformers' MusicGen-Melody chroma in numpy; chroma_cosine
"""
