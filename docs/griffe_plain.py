"""A griffe extension (mkdocs.yml, mkdocstrings ``extensions:``): the package's docstrings are
plain text with reST-style literals (``code``, :func:`name`), not Markdown, so before they are
rendered

- a reST role :func:`~pkg.mod.name` / :class:`Name` becomes the literal ``name`` / ``Name``;
- an ``Example:`` section is read as Google style's ``Examples:`` (its ``>>>`` lines rendered as
  code, not as a note of Markdown text);
- a ``Raises:`` section written as prose (not ``ExceptionType: description`` entries, which the
  Google-style parser needs) is shown as a note titled "Errors" instead of being mis-parsed;
- ``*`` in prose (shapes ``(*, m, n)``, ``**options``) is escaped so Markdown does not read it as
  emphasis (a line-leading ``* `` bullet stays a bullet);
- brackets that Markdown would read as a link or a reference (``E[x](w − v)``, ``a[i][j]``) outside
  literals and code examples are escaped, so math such as ``Σ_k E[x_k²](w_k − ŵ_k)²`` stays text.
"""

from __future__ import annotations

import re

from griffe import Extension

_ROLE = re.compile(r":(?:py:)?(?:func|class|meth|attr|mod|data|obj|exc|const)?:`~?([^`<]+?)(?:\s*<[^>]*>)?`")
_LITERAL = re.compile(r"(``.+?``|`[^`]+`)")
_LINKISH = re.compile(r"\](?=[(\[])")
_EXAMPLE = re.compile(r"(?m)^(\s*)Example:[ \t]*$")
_RAISES = re.compile(r"(?m)^([ \t]*)Raises:[ \t]*\n(?:[ \t]*\n)*([ \t]+)(.*)$")
_ENTRY = re.compile(r"[A-Za-z_][\w.]*(?:\s*\([^)]*\))?\s*:(\s|$)")


def _raises(m: re.Match) -> str:
    indent, body = m.group(1), m.group(3)
    if _ENTRY.match(body) or len(m.group(2)) <= len(indent):
        return m.group(0)
    return m.group(0).replace("Raises:", "Errors:", 1)


def _role(m: re.Match) -> str:
    target = m.group(1).strip()
    if m.group(0).split("`", 1)[0].endswith("~") or "`~" in m.group(0):
        target = target.rsplit(".", 1)[-1]
    return f"``{target}``"


def _escape_prose(p: str) -> str:
    if _LINKISH.search(p):
        p = _LINKISH.sub(r"\\]", p).replace("[", "\\[")
    return p.replace("*", "\\*")


def _escape_line(line: str) -> str:
    # a bullet, or a parameter entry "*args: ..." / "**options: ..." of an Args section
    bullet = re.match(r"^(\s*\* |\s*\*{1,2}\w+(?:\s*\([^)]*\))?:)", line)
    lead, line = (bullet.group(1), line[bullet.end():]) if bullet else ("", line)
    parts = _LITERAL.split(line)
    return lead + "".join(p if i % 2 else _escape_prose(p) for i, p in enumerate(parts))


def plain_docstring(text: str) -> str:
    """The docstring as Markdown that renders as its author wrote it."""
    text = _ROLE.sub(_role, text)
    text = _EXAMPLE.sub(r"\1Examples:", text)
    text = _RAISES.sub(_raises, text)
    out, fence = [], False
    for line in text.split("\n"):
        stripped = line.lstrip()
        if stripped.startswith("```"):
            fence = not fence
        if fence or stripped.startswith((">>>", "...")):
            out.append(line)
        else:
            out.append(_escape_line(line))
    return "\n".join(out)


class PlainDocstrings(Extension):
    def on_instance(self, *, node, obj, agent, **kwargs) -> None:  # noqa: ARG002
        if obj.docstring is not None:
            obj.docstring.value = plain_docstring(obj.docstring.value)
