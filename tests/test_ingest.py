"""Ingestion: boilerplate removal, metadata, offsets, and refusal of unusable files."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.chunk import chunk_article, sentence_spans
from rag.errors import InputError
from rag.ingest import iter_paths, load_article, parse_article

from .conftest import SEEDS

PAGE = """Advertisement
Home | World | Business | Tech
Acme unveils a solar battery that lasts a week

2024-05-01 10:00:00 Daily Planet Editor : Jane Roe
A worker inspects a battery at the Acme plant. (JOHN DOE/REUTERS)

A worker inspects a battery at the Acme plant. (JOHN DOE/REUTERS)

Acme said on Tuesday that its new battery stores 40 kilowatt-hours and costs 11.4 per cent less than last year's model.

02:15

Acme's founder talks batteries

The company will start shipping in June, chief executive Ann Lee told reporters.
Also read: Ten gadgets for summer
Photo: Shutterstock
Related news
Acme rival posts record profit after a strong quarter of sales in Europe.
Copyright ©2024 All rights reserved.
"""


def kept(article, role: str | None = "body") -> list[str]:
    """The kept lines of ``role`` (all kept lines for None)."""
    return [article.text[b.start:b.end] for b in article.blocks if role is None or b.role == role]


def roles(article) -> list[tuple[str, str]]:
    return [(b.role.value, article.text[b.start:b.end][:30]) for b in article.blocks]


def test_every_line_is_kept_with_a_role_and_only_nothing_is_dropped() -> None:
    a = parse_article(PAGE, "acme.txt")
    assert roles(a) == [
        ("site", "Advertisement"),
        ("site", "Home | World | Business | Tech"),
        ("headline", "Acme unveils a solar battery t"),
        ("byline", "2024-05-01 10:00:00 Daily Plan"),  # the dateline stays citable
        ("caption", "A worker inspects a battery at"),
        ("body", "Acme said on Tuesday that its "),
        ("related", "02:15"),  # a clip's length, kept with its title: questions ask it
        ("related", "Acme's founder talks batteries"),  # the title of the video clip
        ("body", "The company will start shippin"),
        ("related", "Also read: Ten gadgets for sum"),
        ("caption", "Photo: Shutterstock"),
        ("related", "Related news"),
        ("body", "Acme rival posts record profit"),  # a sentence after "Related news" is still text
        ("footer", "Copyright ©2024 All rights res"),
    ]
    assert [(d.reason, a.text[d.start:d.end]) for d in a.dropped] == [
        ("repeat", "A worker inspects a battery at the Acme plant. (JOHN DOE/REUTERS)"),
    ]
    repeat = a.dropped[0]
    assert a.text[repeat.same_as:].startswith("A worker inspects")  # points to the kept first copy
    assert repeat.same_as < repeat.start


def test_metadata_is_extracted() -> None:
    a = parse_article(PAGE, "acme.txt")
    assert a.title == "Acme unveils a solar battery that lasts a week"
    assert a.date == "2024-05-01"
    assert a.source == "Daily Planet"
    assert a.author == "Jane Roe"


def test_breadcrumb_title_and_footer() -> None:
    text = ("Home Science Big telescope finds a new moon around a distant planet\n\n"
            "Big telescope finds a new moon around a distant planet\n\n"
            "Astronomers found the moon after three years of observation, the team said.\n\n"
            "Leave a Reply\n\nGreat article, thanks for sharing it with us all today.\n")
    a = parse_article(text, "moon.txt")
    assert a.title == "Big telescope finds a new moon around a distant planet"
    assert roles(a) == [("site", "Home Science Big telescope fin"), ("headline", "Big telescope finds a new moon"),
                        ("body", "Astronomers found the moon aft"), ("site", "Leave a Reply"),
                        ("body", "Great article, thanks for shar")]  # a reader's comment reads as prose


def test_markdown_title_and_html_extraction(tmp_path: Path) -> None:
    md = tmp_path / "a.md"
    md.write_text("# Rain returns to the valley\n\nFarmers welcomed the first rain in six months on Sunday.\n")
    a = load_article(md)
    assert a.title == "Rain returns to the valley"
    assert kept(a) == ["Farmers welcomed the first rain in six months on Sunday."]
    assert kept(a, "headline") == ["# Rain returns to the valley"]
    html = tmp_path / "b.html"
    html.write_text("<html><head><title>Site</title><script>alert(1)</script></head><body><nav>Home | News"
                    "</nav><article><h1>Port reopens after storm</h1><p>The port reopened on <b>Friday</b> "
                    "after a storm closed it for two days.</p><p>Advertisement</p></article>"
                    "<footer>Copyright 2024</footer></body></html>")
    b = load_article(html)
    assert b.title == "Port reopens after storm"
    assert kept(b) == ["The port reopened on Friday after a storm closed it for two days."]
    assert "alert" not in b.text


@pytest.mark.parametrize("payload,message", [
    (b"\x00\x01\x02binary\x00", "binary"),
    (b"caf\xe9 au lait is a drink people like very much.", "not valid UTF-8"),
    (b"", "no article text"),
    (b"   \n\n  \n", "no article text"),
    (b"Advertisement\nLeave a Reply\n", "no article text"),
])
def test_unusable_files_get_a_clear_error(tmp_path: Path, payload: bytes, message: str) -> None:
    f = tmp_path / "bad.txt"
    f.write_bytes(payload)
    with pytest.raises(InputError, match=message) as err:
        load_article(f)
    assert "bad.txt" in str(err.value)


def test_too_large_and_wrong_type(tmp_path: Path) -> None:
    big = tmp_path / "big.txt"
    big.write_text("word " * 1000)
    with pytest.raises(InputError, match="larger than"):
        load_article(big, max_bytes=100)
    odt = tmp_path / "x.odt"
    odt.write_text("A sentence that would be fine in a text file, really.")
    with pytest.raises(InputError, match="unsupported file type"):
        load_article(odt)
    pdf = tmp_path / "x.pdf"  # a known format whose bytes are not one
    pdf.write_text("A sentence that would be fine in a text file, really.")
    with pytest.raises(InputError, match="x.pdf: not a readable PDF"):
        load_article(pdf)


def test_iter_paths_expands_folders_and_reports_missing(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "b.txt").write_text("x")
    (tmp_path / "d" / "a.md").write_text("x")
    (tmp_path / "d" / "skip.bin").write_text("x")
    assert [p.name for p in iter_paths([tmp_path / "d"])] == ["a.md", "b.txt"]
    with pytest.raises(InputError, match="no such file"):
        list(iter_paths([tmp_path / "missing"]))


def test_seed_articles_label_chrome_and_keep_it() -> None:
    """Every seed's body text is free of the chrome the issue lists, and that chrome is still kept,
    labelled with another role."""
    chrome = ["Leave a Reply", "Related news", "Articles You May Like", "Copyright",
              "All rights reserved", "Get more with myNEWS", "Young Chinese singles turn to AI-generated partners",
              "Denial of responsibility", "Also read", "DMCA"]
    titles = {}
    everything = ""
    for path in sorted(SEEDS.glob("*.txt")):
        a = load_article(path)
        body = "\n".join(kept(a))
        everything += "\n".join(kept(a, None))
        titles[a.name] = a.title
        for junk in chrome + ["Advertisement"]:
            assert junk not in body, (a.name, junk)
        assert len(body) > 1500, a.name
    for junk in chrome:
        assert junk in everything, junk
    assert titles["000_24afeec690d630ed.txt"] == "Huawei, OpenAI show tech evolution is relentless"
    assert titles["003_0e7bd4611e476854.txt"].startswith("Chinese entrepreneurs express awe and fear")
    assert titles["002_03be9f1c06671bc9.txt"].startswith("Global Impact: cut off from high-end chips")
    assert "Kirin 9000S" in "\n".join(kept(load_article(SEEDS / "000_24afeec690d630ed.txt")))


def test_chunks_map_back_to_the_file_exactly() -> None:
    for path in sorted(SEEDS.glob("*.txt")):
        original = path.read_bytes().decode("utf-8")
        a = load_article(path)
        chunks = chunk_article(a, chunk_size=400, chunk_overlap=50)
        assert chunks
        for c in chunks:
            assert original[c.start:c.end] == c.text
            assert len(c.text) <= 400
            for s, e in c.sentences:
                assert c.start <= s < e <= c.end
        # a chunk never mixes roles: every kept line it overlaps has the chunk's role
        for c in chunks:
            inside = [b for b in a.blocks if b.start < c.end and c.start < b.end]
            assert inside and {b.role for b in inside} == {c.role}, c
            assert not [d for d in a.dropped if d.start < c.end and c.start < d.end], c


def test_sentence_spans() -> None:
    text = "Mr. Lee said it. Sales rose 11.4 per cent in the U.S. market! Why? “We won,” he said.\nNext line"
    got = [text[s:e] for s, e in sentence_spans(text)]
    assert got == ["Mr. Lee said it.", "Sales rose 11.4 per cent in the U.S. market!", "Why?",
                   "“We won,” he said.", "Next line"]
