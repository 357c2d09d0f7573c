"""An ipywidgets explorer over one generation.

A step slider walks through the finished run: the delayed token matrix up to that step, each codebook's top
tokens with their probabilities before (conditional, unconditional) and after guidance (a figure, and a table
of the guided top tokens), and the audio of the frames finished so far. Sliders for guidance, temperature and
seed regenerate when released; a status line says which settings the run shown was made with.

Examples
--------
>>> from mglab.inspect.explore import explore
>>> explore(model, "lofi piano", duration=2)        # in JupyterLab  # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np

NAMES = ["guidance.hook_cond_logits", "guidance.hook_uncond_logits", "guidance.hook_logits"]


class Explorer:
    """The widgets and the generation they show. ``widget`` is the ipywidgets box; ``render(step)`` redraws."""

    def __init__(self, model, prompt: str, *, guidance_scale: float = 3.0, temperature: float = 1.0, seed: int = 0,
                 top: int = 10, **generate_kwargs):
        import ipywidgets as w

        self.model, self.prompt, self.top, self.kwargs = model, prompt, top, generate_kwargs
        slider = dict(continuous_update=False, layout=w.Layout(width="45%"))
        self.guidance = w.FloatSlider(value=guidance_scale, min=0, max=10, step=0.5, description="guidance",
                                      **slider)
        self.temperature = w.FloatSlider(value=temperature, min=0.1, max=2, step=0.1, description="temperature",
                                         **slider)
        self.seed = w.IntSlider(value=seed, min=0, max=99, description="seed", **slider)
        self.step = w.IntSlider(value=0, min=0, max=1, description="step", **slider)
        self.status = w.Label()
        self.table = w.HTML()
        self.out = w.Output()
        for control in (self.guidance, self.temperature, self.seed):
            control.observe(lambda change: self.regenerate(), names="value")
        self.step.observe(lambda change: self.render(change["new"]), names="value")
        self.widget = w.VBox([w.HBox([self.guidance, self.temperature]), self.seed, self.step, self.status,
                              self.table, self.out])
        self.regenerate()

    def regenerate(self) -> None:
        """Generate with the sliders' settings, recording the logits of every step."""
        self.generation, self.cache = self.model.run_with_cache(
            self.prompt, names_filter=NAMES, guidance_scale=self.guidance.value,
            temperature=self.temperature.value, seed=self.seed.value, do_sample=True, **self.kwargs)
        steps = self.generation.tokens.shape[-1] - 1
        self.status.value = (f"generated: guidance {self.guidance.value:g}, temperature {self.temperature.value:g},"
                             f" seed {self.seed.value}, {steps} steps")
        self.step.max = steps - 1
        self.step.value = min(self.step.value, steps - 1)
        self.render(self.step.value)

    def audio_so_far(self, step: int) -> np.ndarray:
        """Audio ``[channels, samples]`` of the frames finished by ``step``."""
        frames = max(0, step - max(self.model.config.delays) + 1)
        if frames == 0:
            return np.zeros((self.generation.audio.shape[1], 0), dtype=np.float32)
        return self.model.codec.decode(self.generation.codes[:1, :, :frames])[0]

    def figure(self, step: int):
        """The token matrix up to ``step`` and, per codebook, the top tokens before and after guidance."""
        import matplotlib.pyplot as plt

        from . import plot

        k = self.model.config.num_codebooks
        fig = plt.figure(figsize=(12, 3 + 2.2 * ((k + 1) // 2)), constrained_layout=True)
        grid = fig.add_gridspec(1 + (k + 1) // 2, 2)
        plot.plot_delay_pattern(self.generation.tokens[0], pad_token_id=self.model.config.pad_token_id,
                                step=step + 1, ax=fig.add_subplot(grid[0, :]),
                                title=f"tokens after step {step}")
        guided = self.guidance.value != 1.0
        for cb in range(k):
            ax = fig.add_subplot(grid[1 + cb // 2, cb % 2])
            logits = [self.cache[n][step, 0, cb] for n in NAMES if n in self.cache]
            labels = ["conditional", "unconditional", "guided"] if guided else ["conditional", "guided"]
            plot.plot_logits(np.stack(logits), top=self.top, ax=ax, labels=labels[:len(logits)],
                             title=f"codebook {cb}")
        return fig

    def top_tokens(self, step: int, n: int = 3) -> list[list[tuple[int, float]]]:
        """Per codebook, the ``n`` most likely tokens after guidance at ``step`` with their probabilities."""
        from ..core.numeric import softmax

        p = softmax(self.cache[NAMES[2]][step, 0].astype(np.float64))          # [K, vocab]
        order = np.argsort(-p, axis=-1)[:, :n]                                 # [K, n]
        return [[(int(t), float(p[k, t])) for t in row] for k, row in enumerate(order)]

    def table_html(self, step: int) -> str:
        """The step's fed column and guided top tokens, one row per codebook."""
        fed = self.generation.tokens[0, :, step]                               # [K]
        rows = "".join(f"<tr><td>codebook {k}</td><td>{int(fed[k])}</td><td>"
                       + ", ".join(f"{t} ({q:.2f})" for t, q in top) + "</td></tr>"
                       for k, top in enumerate(self.top_tokens(step)))
        return (f'<table class="mglab-top-tokens" data-step="{step}"><tr><th></th><th>fed at step {step}</th>'
                f"<th>top tokens after guidance (p)</th></tr>{rows}</table>")

    def render(self, step: int) -> None:
        """Show ``step``: the token matrix so far, the top tokens before and after guidance, the audio so far."""
        import matplotlib.pyplot as plt
        from IPython.display import Audio, display

        self.table.value = self.table_html(step)
        self.out.clear_output(wait=True)
        with self.out:
            fig = self.figure(step)
            display(fig)
            plt.close(fig)
            audio = self.audio_so_far(step)
            if audio.shape[-1]:
                display(Audio(audio, rate=self.generation.sample_rate))

    def _ipython_display_(self):
        from IPython.display import display
        display(self.widget)


def explore(model, prompt: str, **kwargs) -> Explorer:
    """Open an :class:`Explorer` on ``model.generate(prompt, **kwargs)``; display it in a notebook cell."""
    return Explorer(model, prompt, **kwargs)
