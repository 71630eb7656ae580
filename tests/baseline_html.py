"""The HTML extractor rag-news used before trafilatura (selectolax, hand-written rules), kept only so
tests/test_formats.py can compare both on the same saved pages."""

from __future__ import annotations


def html_to_text(html: str) -> tuple[str, str | None]:
    """Extract readable text from HTML: block elements joined by blank lines, scripts and nav dropped."""
    from selectolax.lexbor import LexborHTMLParser as HTMLParser  # selectolax >= 1.0 dropped .parser

    tree = HTMLParser(html)
    title_node = tree.css_first("h1") or tree.css_first("title")
    title = " ".join(title_node.text().split()) if title_node else None
    for sel in ("script", "style", "noscript", "nav", "header", "footer", "aside", "form", "iframe",
                "svg", "button", "figure figcaption"):
        for node in tree.css(sel):
            node.decompose()
    root = tree.css_first("article") or tree.body or tree.root
    parts: list[str] = []
    if root is not None:
        for node in root.css("h1, h2, h3, h4, p, li, blockquote, pre, td"):
            if len(node.css("p, li")) > (node.tag in ("p", "li")):  # lexbor's css() matches the node too
                continue  # the text is picked up from the inner block
            t = " ".join(node.text(separator=" ").split())
            if t:
                parts.append(t)
        if not parts:
            parts = [" ".join(s.split()) for s in root.text(separator="\n").splitlines() if s.strip()]
    return "\n\n".join(parts), title
