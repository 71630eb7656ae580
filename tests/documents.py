"""Real PDF and DOCX files for the ingestion tests, built with reportlab and python-docx.

The PDF is a two-page e-paper page in two columns, with a running head and a page-number foot on each
page. Its text is drawn line by line *across* the columns (left line 1, right line 1, left line 2, ...),
as some layout tools emit it, so reading order has to come from the geometry, not the content stream.
"""

from __future__ import annotations

from pathlib import Path

PDF_TITLE = "Council backs tidal power scheme in Valmora bay"
PDF_HEAD = "THE VALMORA COURIER · Thursday, 14 March 2024"
PDF_BYLINE = "By Ines Carvalho, Environment reporter"
# Paragraphs per page, in reading order (left column, then right).
PDF_PAGES = [
    [
        "Valmora city council voted on Tuesday to back a tidal power scheme in the bay, ending a planning "
        "dispute that had lasted almost six years.",
        "The scheme, led by the energy company Maré Offshore, will place underwater turbines in the channel "
        "between the harbour wall and Farol island, where the tide runs fastest.",
        "Councillors approved the plan by 31 votes to 9 after a debate that ran past midnight. Opponents "
        "said the turbines could harm the porpoises that feed in the channel every spring.",
        "Maré Offshore said it would pay for a five-year monitoring programme run by the university's "
        "marine biology department, and would stop the turbines if the animals were harmed.",
        "The company's managing director, Rafael Pinto, called the vote a turning point for the region. "
        "\"The tide comes in twice a day, every day, whatever the weather,\" he said.",
        "Fishing crews from the old port had asked for a corridor through the turbine field so that their "
        "boats could still reach the northern grounds, and the final plan includes one.",
    ],
    [
        "Under the approved plan, 48 turbines will be installed in two phases, with the first 12 due to "
        "generate power by the summer of 2026.",
        "At full capacity the scheme is expected to produce 96 megawatts, enough for about 70,000 homes, "
        "according to figures presented to the council.",
        "The total cost is put at 410 million euros, of which the national climate fund will cover "
        "120 million euros.",
        "Construction will bring about 300 jobs to the area, most of them at the shipyard in Porto Baixo, "
        "where the turbine frames will be welded.",
        "A group of residents said they would challenge the decision in the regional court, arguing that "
        "the environmental study was too short.",
        "The council said it was confident the decision would stand, and that work on the seabed surveys "
        "would begin in October.",
    ],
]


def make_news_pdf(path: Path, title: str | None = PDF_TITLE) -> Path:
    """Write the two-page, two-column PDF to ``path``; ``title`` is its Title property (None: reportlab's
    placeholder "untitled")."""
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.utils import simpleSplit
    from reportlab.pdfgen import canvas

    width, height = A4
    margin, gutter, size, leading = 50.0, 24.0, 10.0, 12.5
    col_w = (width - 2 * margin - gutter) / 2
    c = canvas.Canvas(str(path), pagesize=A4, invariant=1)
    if title:
        c.setTitle(title)
    c.setAuthor("Ines Carvalho")
    for page_no, paragraphs in enumerate(PDF_PAGES, start=1):
        c.setFont("Times-Roman", 8)
        c.drawString(margin, height - 30, PDF_HEAD)
        c.drawRightString(width - margin, 30, f"Page {page_no}")
        c.drawString(margin, 30, "valmoracourier.example · News desk: 0800 555 014")
        top = height - 70
        if page_no == 1:
            c.setFont("Times-Bold", 20)
            c.drawString(margin, top, PDF_TITLE)
            c.setFont("Times-Italic", 10)
            c.drawString(margin, top - 22, PDF_BYLINE)
            top -= 50
        # Lay out each column's lines (half of the paragraphs each), then draw them interleaved.
        half = (len(paragraphs) + 1) // 2
        columns: list[list[tuple[float, str]]] = []
        for paras in (paragraphs[:half], paragraphs[half:]):
            y, lines = top, []
            for p in paras:
                for ln in simpleSplit(p, "Times-Roman", size, col_w):
                    lines.append((y, ln))
                    y -= leading
                y -= leading * 0.8  # paragraph space
            columns.append(lines)
        c.setFont("Times-Roman", size)
        for i in range(max(len(col) for col in columns)):
            for x, col in zip((margin, margin + col_w + gutter), columns, strict=True):
                if i < len(col):
                    c.drawString(x, col[i][0], col[i][1])
        c.showPage()
    c.save()
    return path


DOCX_TITLE = "Library lends out its first electric cargo bikes"
DOCX_PARAGRAPHS = [
    "The central library in Hollund has started lending electric cargo bikes alongside its books, the "
    "first library in the region to do so.",
    "Members can borrow one of six bikes for up to three days at no charge, after a short safety session "
    "with the library staff.",
    "The scheme is funded by a 45,000 euro grant from the city's clean transport budget, the head "
    "librarian, Sofie Brandt, said.",
    "Within a week of launch, 212 members had signed up for the safety session, and the bikes are booked "
    "until the end of April.",
]


def make_news_docx(path: Path) -> Path:
    """Write a Word clipping with its title and author in the document properties, a heading and a table."""
    import datetime as dt

    import docx

    d = docx.Document()
    d.core_properties.title = DOCX_TITLE
    d.core_properties.author = "Nils Berg"
    d.core_properties.created = dt.datetime(2024, 4, 3, 8, 0)
    d.add_heading(DOCX_TITLE, level=1)
    for p in DOCX_PARAGRAPHS[:2]:
        d.add_paragraph(p)
    table = d.add_table(rows=2, cols=2)
    for r, (a, b) in enumerate([("Bikes", "6"), ("Loan period", "3 days")]):
        table.cell(r, 0).text, table.cell(r, 1).text = a, b
    for p in DOCX_PARAGRAPHS[2:]:
        d.add_paragraph(p)
    d.sections[0].header.paragraphs[0].text = "Hollund Herald clipping service"
    d.save(str(path))
    return path
