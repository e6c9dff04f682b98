"""Rendering a period answer as a table with bars, for `tallyd query`."""

from __future__ import annotations

from typing import Any

WIDTH = 40


def render(answer: dict[str, Any]) -> str:
    parts = [str(answer[k]) for k in ("year", "month", "day", "hour") if answer[k] is not None]
    title = f"{answer['account']} / {answer['event']} / {'-'.join(parts) or 'all time'}"
    data: dict[str, int] = answer["data"]
    peak = max(data.values(), default=0)
    label_w = max((len(k) for k in data), default=1)
    count_w = max((len(f"{v:,}") for v in data.values()), default=1)
    lines = [title, ""]
    for seg, n in data.items():
        bar = "█" * (round(n / peak * WIDTH) if peak else 0)
        lines.append(f"{seg:>{label_w}}  {n:>{count_w},}  {bar}")
    lines += ["", f"total {answer['total']:,}"]
    return "\n".join(lines) + "\n"
