"""The live browser served by uvicorn on 127.0.0.1, its pages loaded in headless Chromium (one
server per module): typed text → tokens with activations and latent links; a latent page;
search over every latent; steering side by side."""

import html
import re
import urllib.error
import urllib.parse
import urllib.request


def q(path: str, **params) -> str:
    return path + ("?" + urllib.parse.urlencode(params) if params else "")


def text_of(html: str) -> str:
    return re.sub(r"<[^>]+>", "", html)


def test_typed_text_shows_tokens_with_activations_and_latent_links(live, dom, gpt2_browser):
    text = "the function returns a value and the module imports the class"
    page = dom(live.url + q("/", text=text))
    toks = re.findall(r"<span class=\"tok\" data-rel=\"([0-9.]+)\"[^>]*>([^<]*)</span>", page.split('id="top-latents"')[0])
    enc = gpt2_browser.run.encode_text(text)
    assert [html.unescape(t) for _, t in toks] == enc.tokens and len(toks) >= 10   # every token, in order
    assert max(float(r) for r, _ in toks) > 0                            # shaded by activation
    linked = re.findall(r'href="/latent/(\d+)"', page.split('id="top-latents"')[1])
    assert len(linked) >= 3
    fired = set(enc.latents[enc.latents >= 0].tolist())
    assert {int(l) for l in linked} <= fired                            # links are latents that fire on the text
    # shading by one chosen latent: tokens where it does not fire are unshaded
    l = int(linked[0])
    page2 = dom(live.url + q("/", text=text, latent=l))
    rels = [float(r) for r, _ in re.findall(r"data-rel=\"([0-9.]+)\"[^>]*>([^<]*)</span>", page2.split('id="top-latents"')[0])]
    acts = enc.dense()[:, l]
    assert len(rels) == len(acts) and all((r > 0) == (a != 0) for r, a in zip(rels, acts.tolist()))


def test_latent_page_shows_density_flags_histogram_and_logit_effects(live, dom, gpt2_browser):
    l = int(gpt2_browser.index[0][0])
    page = dom(live.url + f"/latent/{l}")
    d = gpt2_browser.latent(l)
    assert f"Latent {l}" in page
    assert f"{d['density']:.4%}" in text_of(page.split('id="density"')[1][:80])
    assert 'id="flags"' in page and 'id="max-act"' in page
    hist = page.split('id="position-histogram"')[1].split("</section>")[0]
    assert hist.count("<div style=\"height:") == len(d["pos_hist"]["counts"]) > 1
    effects = page.split('id="logit-effects"')[1].split("</section>")[0]
    assert effects.count("<li>") == len(d["logits"]["pos"]) + len(d["logits"]["neg"]) > 0
    assert "folded" in effects
    assert page.count('class="ctx"') >= 1 and 'id="steer-link"' in page
    try:
        urllib.request.urlopen(live.url + "/latent/99999")
        raise AssertionError("out-of-range latent served")
    except urllib.error.HTTPError as e:
        assert e.code == 404 and "out of range" in e.read().decode()


def test_search_finds_a_latent_by_explanation_and_by_top_tokens_beyond_the_first_page(live, dom, gpt2_browser):
    index = gpt2_browser.index
    top = max(int(row[0]) for row in index)
    planted = gpt2_browser.explanation(top)          # conftest planted "zebra crossing detector" for it
    assert "zebra crossing" in planted
    page = dom(live.url + q("/search", q="ZEBRA crossing"))
    hits = [int(x) for x in re.findall(r'class="hit" data-latent="(\d+)"', page)]
    assert hits == [top] and planted in page
    # by top tokens: the last alive latent's first top token; with limit=1 page it is still counted
    last = index[-1]
    word = last[4].split()[0]
    page = dom(live.url + q("/search", q=word, limit=500))
    hits = [int(x) for x in re.findall(r'class="hit" data-latent="(\d+)"', page)]
    assert int(last[0]) in hits
    assert len(hits) == sum(1 for row in index if word.lower() in f"{row[4]} {row[5]}".lower())


def test_steering_shows_two_continuations_that_agree_at_zero_and_differ_when_strong(live, dom, gpt2_browser):
    l = int(gpt2_browser.index[0][0])
    prompt = "the function returns a value of the"
    same = dom(live.url + q("/steer", latent=l, strength=0, prompt=prompt, max_new_tokens=8))
    cont = re.findall(r'<b class="continuation">([^<]*)</b>', same)
    assert len(cont) == 2 and cont[0] == cont[1] and cont[0].strip()
    assert 'id="same"' in same
    strong = dom(live.url + q("/steer", latent=l, strength=60, prompt=prompt, max_new_tokens=8))
    cont2 = re.findall(r'<b class="continuation">([^<]*)</b>', strong)
    assert len(cont2) == 2 and cont2[0] == cont[0] and cont2[1] != cont2[0]
    assert 'id="baseline"' in strong and 'id="steered"' in strong and "strength 60" in strong
    summary = strong.split('id="latent-summary"')[1].split("</p>")[0]
    assert f'href="/latent/{l}"' in summary and html.escape(gpt2_browser.index_row(l)[4], quote=False) in summary
    assert "promote" in summary


def test_bad_requests_are_pages_naming_the_problem(live):
    for path, needle in ((q("/steer", latent=10 ** 6, prompt="the"), "out of range"),
                         (q("/steer", latent=0, prompt="the", max_new_tokens=1000), "max_new_tokens"),
                         (q("/", text="x" * 5000), "too long"), (q("/", text="the", latent="abc"), "whole number")):
        try:
            urllib.request.urlopen(live.url + path)
            raise AssertionError(f"{path} was accepted")
        except urllib.error.HTTPError as e:
            assert e.code == 400 and needle in e.read().decode(), path
