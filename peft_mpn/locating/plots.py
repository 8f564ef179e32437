"""The two plots of a `NeuronLocation`: located neurons per layer, and the overlap of the languages' sets.

matplotlib is imported only here, and only when a plot draws its own figure (no `ax` given), so importing
`peft_mpn.locating` does not need it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # for the annotations only: location.py imports this module
    from .location import NeuronLocation


def _new_axes(figsize: tuple[float, float]) -> Any:
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=figsize)
    return ax


def plot_layers(location: NeuronLocation, ax: Any = None, per_language: bool = True) -> Any:
    """Bar chart of the located neurons per layer, with each language's own count as a line; returns the Axes."""
    created = ax is None
    if created:
        ax = _new_axes((max(4.0, 0.45 * len(location.counts()) + 2), 3.5))
    counts = location.counts()
    layers = list(counts)
    ax.bar(layers, [counts[layer] for layer in layers], color="tab:blue", label="language-agnostic", zorder=2)
    if per_language:
        for lang, lang_counts in location.language_counts().items():
            ax.plot(layers, [lang_counts.get(layer, 0) for layer in layers], marker=".", lw=1, label=lang)
    ax.set_xlabel("layer")
    ax.set_ylabel("neurons")
    ax.set_xticks(layers)
    ax.set_title(f"Located neurons per layer ({location.num_neurons} in all)")
    ax.legend(fontsize="small", ncols=2 if len(location.languages) > 6 else 1)
    if created:
        ax.figure.tight_layout()
    return ax


def plot_overlap(location: NeuronLocation, ax: Any = None) -> Any:
    """Language × language Jaccard heatmap of the per-language neuron sets, annotated; returns the Axes."""
    created = ax is None
    if created:
        size = max(3.5, 0.5 * len(location.languages) + 2)
        ax = _new_axes((size + 0.8, size))
    matrix = location.jaccard()
    image = ax.imshow(matrix, vmin=0.0, vmax=1.0, cmap="viridis")
    n = len(location.languages)
    ax.set_xticks(range(n), location.languages)
    ax.set_yticks(range(n), location.languages)
    for i in range(n):
        for j in range(n):
            value = matrix[i][j]
            color = "black" if value > 0.6 else "white"
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize="small", color=color)
    ax.figure.colorbar(image, ax=ax, label="Jaccard")
    ax.set_title("Overlap of per-language neuron sets")
    if created:
        ax.figure.tight_layout()
    return ax


__all__ = ["plot_layers", "plot_overlap"]
