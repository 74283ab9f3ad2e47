"""mkdocs hooks (``hooks:`` in mkdocs.yml).

The docstrings name other objects the Sphinx way (``:class:`Replica```), which Markdown renders as the role
followed by code. The API reference shows only the code.
"""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(r":(?:attr|class|data|exc|func|meth|mod|obj):(?=<code>)")


def on_page_content(html: str, **_: Any) -> str:
    """Drops the ``:role:`` before each cross-reference of the generated API reference."""
    return _ROLE.sub("", html)
