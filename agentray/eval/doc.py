"""One report, two renderings: markdown (plots as PNG files beside it) and a self-contained
HTML page (the same plots embedded as base64 PNG)."""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field

from agentray import storage

_CODE_SPAN = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*([^*]+)\*\*")
_BACKTICK_RUNS = re.compile(r"`{3,}")
STYLE = """
body { font-family: -apple-system, Segoe UI, Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1100px; color: #222; line-height: 1.45; padding: 0 1em; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 4px 8px; vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
pre { background: #f6f8fa; padding: 0.6em; overflow-x: auto; white-space: pre-wrap;
      font-size: 0.85em; }
code { background: #f2f2f2; padding: 0 3px; }
img { max-width: 100%; }
"""


def _inline_html(text: str) -> str:
    out = html.escape(text)
    out = _CODE_SPAN.sub(r"<code>\1</code>", out)
    return _BOLD.sub(r"<strong>\1</strong>", out)


def _cell_md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


@dataclass
class Doc:
    title: str
    blocks: list[tuple[str, object]] = field(default_factory=list)
    images: dict[str, bytes] = field(default_factory=dict)

    def heading(self, text: str, level: int = 2) -> None:
        self.blocks.append(("heading", (level, text)))

    def para(self, text: str) -> None:
        self.blocks.append(("para", text))

    def bullets(self, items: list[str]) -> None:
        if items:
            self.blocks.append(("bullets", items))

    def table(
        self, header: list[str], rows: list[list[str]], numeric: set[int] = frozenset()
    ) -> None:
        """``numeric``: column indexes aligned right."""
        self.blocks.append(("table", (header, rows, set(numeric))))

    def image(self, name: str, png: bytes, alt: str) -> None:
        self.images[name] = png
        self.blocks.append(("image", (name, alt)))

    def code(self, text: str, caption: str = "") -> None:
        self.blocks.append(("code", (caption, text)))

    def markdown(self, image_dir: str = "plots") -> str:
        lines = [f"# {self.title}", ""]
        for kind, value in self.blocks:
            if kind == "heading":
                level, text = value
                lines += ["#" * level + " " + text, ""]
            elif kind == "para":
                lines += [value, ""]
            elif kind == "bullets":
                lines += [f"- {item}" for item in value] + [""]
            elif kind == "table":
                header, rows, numeric = value
                align = ["---:" if i in numeric else "---" for i in range(len(header))]
                lines.append("| " + " | ".join(_cell_md(h) for h in header) + " |")
                lines.append("|" + "|".join(align) + "|")
                lines += ["| " + " | ".join(_cell_md(c) for c in row) + " |" for row in rows]
                lines.append("")
            elif kind == "image":
                name, alt = value
                lines += [f"![{alt}]({image_dir}/{name})", ""]
            elif kind == "code":
                caption, text = value
                if caption:
                    lines += [caption, ""]
                longest = max((len(run) for run in _BACKTICK_RUNS.findall(text)), default=2)
                fence = "`" * (longest + 1)  # longer than any run of backticks inside
                lines += [fence, text, fence, ""]
        return "\n".join(lines)

    def html(self) -> str:
        parts = [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{html.escape(self.title)}</title><style>{STYLE}</style></head><body>",
            f"<h1>{html.escape(self.title)}</h1>",
        ]
        for kind, value in self.blocks:
            if kind == "heading":
                level, text = value
                parts.append(f"<h{level}>{_inline_html(text)}</h{level}>")
            elif kind == "para":
                parts.append(f"<p>{_inline_html(value)}</p>")
            elif kind == "bullets":
                parts.append(
                    "<ul>" + "".join(f"<li>{_inline_html(i)}</li>" for i in value) + "</ul>"
                )
            elif kind == "table":
                parts.append(_html_table(*value))
            elif kind == "image":
                name, alt = value
                data = base64.b64encode(self.images[name]).decode()
                parts.append(
                    f'<p><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></p>'
                )
            elif kind == "code":
                caption, text = value
                if caption:
                    parts.append(f"<p>{_inline_html(caption)}</p>")
                parts.append(f"<pre>{html.escape(text)}</pre>")
        parts.append("</body></html>")
        return "\n".join(parts) + "\n"

    def write(self, out_dir: str, stem: str) -> tuple[str, str]:
        """``<stem>.md`` (+ ``plots/*.png``) and the self-contained ``<stem>.html`` under
        ``out_dir`` (a path or URI); returns the locations of the two pages."""
        for name, png in self.images.items():
            storage.write_bytes(storage.join(out_dir, "plots", name), png)
        md = storage.write_text(storage.join(out_dir, f"{stem}.md"), self.markdown())
        page = storage.write_text(storage.join(out_dir, f"{stem}.html"), self.html())
        return md, page


def _html_table(header: list[str], rows: list[list[str]], numeric: set[int]) -> str:
    head = "".join(f"<th>{_inline_html(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="num">{_inline_html(c)}</td>'
            if i in numeric
            else f"<td>{_inline_html(c)}</td>"
            for i, c in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
