"""The browser's HTML escapes everything that comes from text, tokens and explanations."""

from probsae.browser import pages
from probsae.browser.state import EncodedPage, TokenShade


def test_text_and_tokens_are_escaped():
    evil = "</textarea><script>alert(1)</script>"
    enc = EncodedPage(evil, [TokenShade("<b>x</b>", 3, 1.0, 0.5)], [(3, 1.0, "<i>", 0.5, ["dense"])], None)
    html = pages.page("t<", "run<", pages.text_form(evil) + pages.encoded(enc))
    assert "<script>" not in html and "<b>x</b>" not in html and "<i>" not in html
    assert "&lt;script&gt;" in html and "&lt;b&gt;x&lt;/b&gt;" in html
    assert "background:rgba(255,120,30,0.500)" in html and "class='flag'>dense" in html


def test_search_page_escapes_explanations_and_says_how_many_are_shown():
    hits = [[i, 0.01, 1.0, [], "tok", "<img src=x onerror=alert(1)>"] for i in range(5)]
    html = pages.search_page("<q>", hits, 2)
    assert "<img" not in html and "&lt;q&gt;" in html
    assert "5 latents match" in html and "showing 2 of 5" in html and html.count("class='hit'") == 2
