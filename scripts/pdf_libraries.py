"""Speed and reading order of PDF libraries on the two-column test PDF of tests/documents.py.

pypdf and pdfplumber are not dependencies: run this in a scratch venv with the pinned versions
(pip install pypdf==7.1.0 pdfplumber==0.11.10 pypdfium2==5.15.2 reportlab==5.1.0 trafilatura==2.3.1
lxml-html-clean==0.4.6 python-docx==1.2.0), from the repository root:

    PYTHONPATH=$PWD python scripts/pdf_libraries.py

Prints per library: median ms per page on a 40-page file (the two pages x 20), and how many of the 12
paragraphs appear whole in its text. The file draws its lines across the columns, so a library that
follows the content stream, or reads each row across the page, finds none whole.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pypdf import PdfReader, PdfWriter

from tests.documents import PDF_PAGES, make_news_pdf


def _norm(s: str) -> str:
    return " ".join(s.split())


def whole_paragraphs(text: str) -> int:
    t = _norm(text)
    return sum(_norm(p) in t for page in PDF_PAGES for p in page)


def pypdf_text(path: Path) -> str:
    return "\n".join(p.extract_text() for p in PdfReader(path).pages)


def pypdf_layout(path: Path) -> str:
    return "\n".join(p.extract_text(extraction_mode="layout") for p in PdfReader(path).pages)


def pdfplumber_text(path: Path) -> str:
    import pdfplumber

    with pdfplumber.open(path) as pdf:
        return "\n".join(p.extract_text() or "" for p in pdf.pages)


def pdfium_text(path: Path) -> str:
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(path)
    try:
        return "\n".join(pdf[i].get_textpage().get_text_range() for i in range(len(pdf)))
    finally:
        pdf.close()


def rag_reader(path: Path) -> str:
    from rag.readers import read_pdf

    return read_pdf(path.read_bytes(), path).text


def main() -> None:
    tmp = Path(tempfile.mkdtemp())
    src = make_news_pdf(tmp / "courier.pdf")
    writer = PdfWriter()
    for _ in range(20):
        for page in PdfReader(src).pages:
            writer.add_page(page)
    big = tmp / "courier40.pdf"
    writer.write(big)
    libs: list[tuple[str, Callable[[Path], str]]] = [
        ("pypdf 7.1.0 extract_text", pypdf_text), ("pypdf 7.1.0 layout mode", pypdf_layout),
        ("pdfplumber 0.11.10 extract_text", pdfplumber_text), ("pypdfium2 5.15.2 get_text_range", pdfium_text),
        ("pypdfium2 5.15.2 + rag.readers.read_pdf", rag_reader)]
    print("| library | ms per page | paragraphs whole (of 12) |\n|---|---:|---:|")
    for name, extract in libs:
        times = []
        for _ in range(3):
            t = time.perf_counter()
            extract(big)
            times.append(time.perf_counter() - t)
        print(f"| {name} | {statistics.median(times) / 40 * 1000:.1f} | {whole_paragraphs(extract(src))} |")


if __name__ == "__main__":
    main()
