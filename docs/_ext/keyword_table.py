"""The table of which algorithm takes which DST keyword, written from the classes themselves when the documentation
is built: the keywords from each class's ``dst_keywords()`` (the list its constructor checks), their meaning from
the ``:param:`` fields of the DSTD3 and PrunedTD3 docstrings, the default η and e from the class attributes.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

FAMILIES = ["TD3", "SAC", "DDPG", "TQC", "CrossQ"]
KINDS = ["DS", "Static", "Pruned"]


def _class(kind: str, family: str) -> Any:
    import sb3_dst

    return getattr(sb3_dst, f"{kind}{family}")


def param_docs(cls: type) -> dict[str, str]:
    """``name -> text`` of the ``:param name: text`` fields of a class docstring (continuation lines joined)."""
    fields: dict[str, str] = {}
    name = None
    for line in (cls.__doc__ or "").splitlines():
        match = re.match(r"\s*:param (\w+):\s*(.*)", line)
        if match:
            name = match.group(1)
            fields[name] = match.group(2)
        elif name and line.startswith(" " * 8) and line.strip():
            fields[name] += " " + line.strip()
        else:
            name = None
    return fields


def _markdown(text: str) -> str:
    """The docstrings' reST inline markup as Markdown: ``x`` -> `x`, :class:`~a.b.C` -> `C`."""
    text = re.sub(r":\w+:`~?(?:[\w.]+\.)?([\w]+)`", r"`\1`", text)
    return text.replace("``", "`").replace("|", "\\|")


def keyword_table() -> str:
    docs = param_docs(_class("DS", "TD3"))
    for keyword, text in param_docs(_class("Pruned", "TD3")).items():
        docs[keyword] = f"{docs[keyword]} Pruned*: {text}" if keyword in docs else text
    accepted = {kind: set(_class(kind, "TD3").dst_keywords()) for kind in KINDS}
    for family in FAMILIES:  # every family takes the same keywords per kind; say so if that ever changes
        for kind in KINDS:
            keywords = set(_class(kind, family).dst_keywords())
            if keywords != accepted[kind]:
                raise RuntimeError(f"{kind}{family} takes {sorted(keywords)}, {kind}TD3 {sorted(accepted[kind])}")
    ordered = list(dict.fromkeys(k for kind in KINDS for k in _class(kind, "TD3").dst_keywords()))
    lines = ["| keyword | DS* | Static* | Pruned* | meaning (from the docstrings) |", "| --- | --- | --- | --- | --- |"]
    for keyword in ordered:
        marks = ["✓" if keyword in accepted[kind] else "" for kind in KINDS]
        lines.append(f"| `{keyword}` | " + " | ".join(marks) + f" | {_markdown(docs.get(keyword, ''))} |")
    defaults = ["| family | default η (`drop_fraction`) | default e (`evolution_interval`) |", "| --- | --- | --- |"]
    for family in FAMILIES:
        cls = _class("DS", family)
        updater = cls.default_updater  # the DS class's Evolve: its defaults are the family's
        defaults.append(f"| {family} | {updater.drop_fraction} | {updater.evolution_interval} |")
    return "\n".join(lines) + "\n\nDefaults of the evolution, per family:\n\n" + "\n".join(defaults) + "\n"


def _on_builder_inited(app: Any) -> None:
    folder = Path(app.srcdir) / "_generated"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "keywords.md"
    text = keyword_table()
    if not path.is_file() or path.read_text() != text:
        path.write_text(text)


def setup(app: Any) -> dict[str, Any]:
    app.connect("builder-inited", _on_builder_inited)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
