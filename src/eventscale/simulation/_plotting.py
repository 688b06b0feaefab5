"""Drawing helpers the simulation's plots share (matplotlib, the ``plot`` extra).

Each result draws itself (:meth:`Timeline.plot`, :meth:`JobTimeline.plot`,
:meth:`ClosedLoopResult.plot`...) in the module that defines it; these helpers know
nothing of the results, so the imports point one way.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from eventscale._optional import import_optional

__all__ = ("age_axis", "failed_spans", "fit_replicas", "merged", "pyplot", "save")


def pyplot(what: str) -> Any:
    mpl = import_optional("matplotlib", extra="plot", what=what)
    mpl.use("Agg")
    return import_optional("matplotlib.pyplot", extra="plot", what=what)


def failed_spans(ax: Any, times: Sequence[float], failed: Sequence[bool], width: float) -> None:
    """Shade the ticks whose read failed (a failed read is not a 0)."""
    label = "read failed"
    for t, bad in zip(times, failed, strict=True):
        if bad:
            ax.axvspan(t, t + width, color="tab:red", alpha=0.15, linewidth=0, label=label)
            label = "_nolegend_"


def save(plt: Any, fig: Any, path: str) -> None:
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def age_axis(ax: Any, times: Sequence[float], ages: Sequence[float]) -> None:
    """The oldest waiting item's age on a right-hand axis of ``ax``."""
    age = ax.twinx()
    age.step(
        times,
        ages,
        where="post",
        color="tab:brown",
        linewidth=0.8,
        label="oldest age (s, right axis)",
    )
    age.set_ylabel("oldest age (s)")
    age.legend(loc="upper left", fontsize="small")


def fit_replicas(ax: Any, peak: int, maximum: int) -> None:
    """A replica axis fitted to the counts drawn; the max line only if it is near them."""
    top = max(1, peak) * 1.15 + 0.5
    if maximum <= top * 1.5:
        ax.axhline(maximum, color="grey", linestyle=":", linewidth=0.8, label="max")
        top = max(top, maximum * 1.05 + 0.5)
    ax.set_ylim(0, top)


def merged(spans: Iterator[tuple[str, float, float]]) -> list[tuple[str, float, float]]:
    """Overlapping spans of one kind joined."""
    out: list[tuple[str, float, float]] = []
    for kind, start, end in spans:
        if out and out[-1][0] == kind and start <= out[-1][2]:
            out[-1] = (kind, out[-1][1], max(out[-1][2], end))
        else:
            out.append((kind, start, end))
    return out
