"""report.md: one heading per section with its status and wall time, then what it found
(each section's own summary lines), its failed checks, or its error."""

from __future__ import annotations


def render(meta: dict, sections: dict) -> str:
    lines = ["# ftagent GPU check", "",
             f"{meta['when']}; device {meta['device']}"
             + (f" ({meta['gpu']})" if meta.get("gpu") else "")
             + f"; sizes {meta['size']}; budget {meta['budget_s']:.0f} s, "
             f"spent {meta['spent_s']:.0f} s", "",
             "| section | status | wall s |", "|---|---|---|"]
    lines += [f"| {name} | {s['status']} | {s['wall_s']} |" for name, s in sections.items()]
    if meta.get("models"):
        lines += ["", "Random-weight models built for this run: " + "; ".join(
            f"{k}: {v['params'] / 1e6:.0f}M parameters, {v['layers']} layers "
            f"(built in {v['build_s']} s)" for k, v in meta["models"].items())]
    for name, s in sections.items():
        lines += ["", f"## {name}: {s['title']} ({s['status']}, {s['wall_s']} s)", ""]
        if s["status"] == "skipped":
            lines.append(s["reason"])
            continue
        if s["status"] == "error":
            lines += [f"Error: {s['error']}", "", "```", *s["traceback"], "```"]
            continue
        result = s["result"]
        lines += result.get("summary", [])
        failed = [k for k, ok in result.get("checks", {}).items() if not ok]
        if failed:
            lines += ["", "Checks that did not hold: " + ", ".join(failed)]
    return "\n".join(lines) + "\n"
