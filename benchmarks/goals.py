"""The goal lines the ``*_goals.py`` benchmark scripts print: "met", "NOT MET" or "n/a", each kept with
its numbers for ``--json``. Imported by the scripts from their own folder."""

from __future__ import annotations


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "NOT MET")


def goal(results: dict, key: str, text: str, ok: bool | None, **numbers) -> None:
    """Print one goal line and keep it (with its numbers) for --json."""
    line = f"GOAL {key}: {text} -> {verdict(ok)}"
    print(line, flush=True)
    results.setdefault("goals", []).append({"goal": key, "line": line, "met": ok, **numbers})
