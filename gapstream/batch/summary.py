"""The table printed at the end of a batch: one row per file, totals, then the failures."""

from __future__ import annotations

from .job import FileOutcome


def _table(rows: list[list[str]], right: set[int]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    fmt = [(str.rjust if i in right else str.ljust) for i in range(len(widths))]
    lines = ["  ".join(fmt[i](c, widths[i]) for i, c in enumerate(r)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def summary(outcomes: list[FileOutcome], skipped: int = 0, not_retried: list[FileOutcome] | None = None
            ) -> str:
    """The table of ``outcomes`` (this run's files), a line for ``skipped`` (done earlier) and the
    files ``not_retried`` (failed earlier)."""
    head = ["file", "status", "frames", "person s", "events", "time s", "attempts"]
    rows = [head] + [[o.key, o.status, str(o.frames), f"{o.person_seconds:.1f}", str(o.events),
                      f"{o.seconds:.1f}", str(o.attempts)] for o in outcomes]
    failed = [o for o in outcomes if not o.ok]
    total = ["total", f"{len(outcomes) - len(failed)} done", str(sum(o.frames for o in outcomes)),
             f"{sum(o.person_seconds for o in outcomes):.1f}", str(sum(o.events for o in outcomes)),
             f"{sum(o.seconds for o in outcomes):.1f}", ""]
    lines = _table(rows + [total], right={2, 3, 4, 5, 6}) if outcomes else ["no files processed"]
    if skipped:
        lines.append(f"{skipped} file(s) skipped: done in an earlier run")
    if failed:
        lines.append(f"failures ({len(failed)}):")
        lines += [f"  {o.key}: [{o.reason}] {o.error}" for o in failed]
    if not_retried:
        lines.append(f"failed in an earlier run, not retried ({len(not_retried)}; --retry-failed):")
        lines += [f"  {o.key}: [{o.reason}] {o.error}" for o in not_retried]
    return "\n".join(lines)
