"""The live browser's HTML: server-rendered pages whose every state is a URL (GET forms and
links), so a headless browser can load any of them and tests can read the DOM. Every string that
comes from text, tokens or explanations is escaped here."""

from __future__ import annotations

from html import escape
from typing import Any
from urllib.parse import urlencode

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1d1d1f;background:#fafafa}
header{background:#1d1d1f;color:#fff;padding:8px 16px;display:flex;gap:18px;align-items:center}
header a{color:#fff;text-decoration:none}header .run{opacity:.7;font-size:12px}
main{padding:12px 18px;max-width:1300px}section{background:#fff;border:1px solid #ddd;border-radius:6px;padding:10px 14px;margin:10px 0}
h2{font-size:15px;margin:2px 0 8px}.tok{white-space:pre-wrap;border-radius:2px;font-family:ui-monospace,monospace;font-size:13px}
.flag{background:#ffe3e3;color:#a61e1e;border-radius:3px;padding:0 4px;font-size:11px;margin-left:4px}
table{border-collapse:collapse}td,th{padding:2px 8px;text-align:left;border-bottom:1px solid #eee;vertical-align:top}
.ctx{font-family:ui-monospace,monospace;font-size:12px;white-space:pre-wrap;margin:3px 0}
.bars{display:flex;align-items:flex-end;gap:1px;height:70px}.bars div{background:#1c7ed6;flex:1;min-width:2px}
.pos{color:#1c7ed6}.neg{color:#e03131}.cols{display:flex;gap:14px}.cols>section{flex:1}
.gen{font-family:ui-monospace,monospace;white-space:pre-wrap;font-size:14px}.prompt{color:#777}
.note{color:#666;font-size:12px}.err{color:#a61e1e;font-weight:600}input[type=text],textarea{font:inherit}
"""


def page(title: str, run_label: str, body: str) -> str:
    """A whole page: header with the three tools, then ``body`` (already HTML)."""
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title><style>{CSS}</style>"
            f"</head><body><header><b>probsae browser</b><a href='/'>text</a><a href='/search'>search</a>"
            f"<a href='/steer'>steer</a><span class='run'>{escape(run_label)}</span></header><main>{body}</main></body></html>")


def url(path: str, **params: Any) -> str:
    return escape(path + ("?" + urlencode({k: v for k, v in params.items() if v is not None}) if params else ""))


def flags_html(flags: list[str]) -> str:
    return "".join(f"<span class='flag'>{escape(f)}</span>" for f in flags)


def shade(token: str, rel: float, title: str = "") -> str:
    """A token on a background whose opacity is its relative activation (as the dashboard's)."""
    return (f"<span class='tok' data-rel='{rel:.3f}' title='{escape(title)}' "
            f"style='background:rgba(255,120,30,{min(max(rel, 0.0), 1.0):.3f})'>{escape(token)}</span>")


def error(message: str) -> str:
    return f"<section><p class='err' id='error'>{escape(message)}</p></section>"


def text_form(text: str = "", latent: int | None = None) -> str:
    return ("<section><h2>Encode text</h2><form method='get' action='/'>"
            f"<textarea name='text' rows='4' cols='100'>{escape(text)}</textarea><br>"
            f"shade by latent (optional): <input type='text' name='latent' size='6' value='{'' if latent is None else latent}'> "
            "<button type='submit'>encode</button></form></section>")


def encoded(enc) -> str:
    """Tokens with their shading, then the text's top latents as links (flagged ones marked)."""
    what = f"latent {enc.latent}" if enc.latent is not None else "each token's strongest latent (relative to its max)"
    toks = "".join(shade(t.text, t.rel, f"latent {t.latent}: {t.act:.3f} ({t.rel:.0%} of its max)" if t.latent >= 0
                         else "no latent fires") for t in enc.tokens)
    rows = "".join(
        f"<tr class='top-latent' data-latent='{l}'><td><a href='{url(f'/latent/{l}')}'>latent {l}</a>{flags_html(fl)}</td>"
        f"<td>{a:.3f}</td><td>{rel:.0%}</td><td class='tok'>{escape(tok)}</td>"
        f"<td><a href='{url('/', text=enc.text, latent=l)}'>shade</a></td></tr>" for l, a, tok, rel, fl in enc.top)
    return (f"<section id='tokens'><h2>Tokens, shaded by {escape(what)}</h2><div>{toks}</div></section>"
            "<section id='top-latents'><h2>Top latents of the text</h2><p class='note'>Ranked by code relative to "
            "the latent's max over the latent cache; flagged latents (dense, window-start, positional) are marked.</p>"
            f"<table><tr><th>latent</th><th>code</th><th>of max</th><th>at token</th><th></th></tr>{rows}</table></section>")


def bars(counts: list[float], cls: str = "bars") -> str:
    top = max(counts, default=0) or 1
    return f"<div class='{cls}'>" + "".join(
        f"<div style='height:{100 * c / top:.1f}%' title='{c:g}'></div>" for c in counts) + "</div>"


def context(ex: dict[str, Any], max_act: float) -> str:
    """One context of the dashboard data: tokens shaded by the latent's code there."""
    toks = "".join(shade(t, a / max_act if max_act > 0 else 0.0, f"{a:.3f}") for t, a in zip(ex["tokens"], ex["acts"]))
    start = "<span class='note'>[window start] </span>" if ex.get("at_start") else "…"
    return f"<div class='ctx' data-window='{ex['window']}'><b>{ex['max']:.2f}</b> {start}{toks}</div>"


def latent_page(d: dict[str, Any], explanation: str, causal: bool) -> str:
    """The latent page: facts and flags, position histogram, logit effects, explanation, top
    contexts and percentile buckets; a steering form on causal LMs."""
    l, m = d["id"], d["max_act"]
    lo, hi, share = d["band"]
    facts = (f"<table id='facts'><tr><th>density</th><td id='density'>{d['density']:.4%}</td></tr>"
             f"<tr><th>firing windows</th><td>{d['windows']:,}</td></tr><tr><th>max activation</th><td id='max-act'>{m:.4g}</td></tr>"
             f"<tr><th>mean when firing</th><td>{d['mean_act']:.4g}</td></tr>"
             f"<tr><th>flags</th><td id='flags'>{flags_html(d['flags']) or 'none'}</td></tr>"
             f"<tr><th>position band</th><td>{share:.0%} of |activation| mass at positions {lo}–{hi}</td></tr></table>")
    pos = d["pos_hist"]
    hist = (f"<section id='position-histogram'><h2>Position histogram</h2>{bars(pos['counts'])}"
            f"<p class='note'>|activation| mass per window-position bin, positions {pos['edges'][0]}–{pos['edges'][-1]}</p></section>")
    if "logits" in d:
        cols = "".join(f"<td><ol class='{k}'>" + "".join(f"<li><span class='tok'>{escape(t)}</span> {v:+.3f}</li>"
                                                          for t, v in d["logits"][k]) + "</ol></td>" for k in ("pos", "neg"))
        logits = (f"<section id='logit-effects'><h2>Logit effects</h2><p class='note'>W_dec · W_U with the final norm folded in</p>"
                  f"<table><tr><th>promoted</th><th>suppressed</th></tr><tr>{cols}</tr></table></section>")
    else:
        logits = "<section id='logit-effects'><h2>Logit effects</h2><p class='note'>none: not a causal LM</p></section>"
    expl = (f"<section id='explanation'><h2>Explanation</h2><p>{escape(explanation) or '<span class=note>no autointerp result for this latent</span>'}</p></section>")
    top = "".join(context(e, m) for e in d["top"])
    buckets = "".join(f"<h3>{escape(b['label'])} <span class='note'>({b['n']} windows)</span></h3>"
                      + "".join(context(e, m) for e in b["examples"]) for b in d["buckets"])
    steer = (f"<p><a id='steer-link' href='{url('/steer', latent=l)}'>steer with this latent</a></p>" if causal else
             "<p class='note'>steering needs a causal LM</p>")
    return (f"<section><h2>Latent {l}</h2><div class='cols'><div>{facts}{steer}</div></div></section>{hist}{logits}{expl}"
            f"<section id='top-contexts'><h2>Top contexts</h2>{top}</section><section id='buckets'><h2>Activation-percentile buckets</h2>{buckets}</section>")


def search_page(query: str, hits: list[list], limit: int) -> str:
    rows = "".join(f"<tr class='hit' data-latent='{r[0]}'><td><a href='{url(f'/latent/{r[0]}')}'>latent {r[0]}</a>"
                   f"{flags_html(r[3])}</td><td>{r[1]:.3%}</td><td>{r[2]:.3g}</td><td class='tok'>{escape(r[4])}</td>"
                   f"<td>{escape(r[5])}</td></tr>" for r in hits[:limit])
    more = f"<p class='note'>showing {limit} of {len(hits)}</p>" if len(hits) > limit else ""
    found = (f"<p id='count'>{len(hits)} latents match</p>{more}<table><tr><th>latent</th><th>density</th><th>max</th>"
             f"<th>top tokens</th><th>explanation</th></tr>{rows}</table>") if query else ""
    return (f"<section><h2>Search every alive latent</h2><form method='get' action='/search'>"
            f"<input type='text' name='q' size='50' value='{escape(query)}'> <button type='submit'>search</button></form>"
            f"<p class='note'>by explanation (autointerp), top tokens or id</p>{found}</section>")


def steer_form(latent: int | None, strength: float, prompt: str, max_new_tokens: int) -> str:
    return ("<section><h2>Steer</h2><form method='get' action='/steer'>"
            f"latent <input type='text' name='latent' size='6' value='{'' if latent is None else latent}'> "
            f"strength <input type='text' name='strength' size='5' value='{strength:g}'> "
            f"tokens <input type='text' name='max_new_tokens' size='4' value='{max_new_tokens}'><br>"
            f"prompt <input type='text' name='prompt' size='90' value='{escape(prompt)}'> <button type='submit'>generate</button>"
            "</form><p class='note'>Strength is in units of the latent's max activation over the latent cache: strength 1 "
            "adds, at every token, what the SAE writes when the latent fires at its strongest "
            "(decode(c·e_i) − decode(0), through the SAE's own input normalisation). Greedy decoding.</p></section>")


def latent_summary(d: dict[str, Any], row: list | None) -> str:
    """One line on the steering page: what the latent fires on and what it promotes."""
    fires = f"fires most on <span class='tok'>{escape(row[4])}</span>" if row else "never fires in the cache"
    promotes = ("; its logit effects promote <span class='tok'>" + escape(" ".join(t.strip() or repr(t) for t, _ in
                d["logits"]["pos"][:8])) + "</span>") if "logits" in d else ""
    link = url(f"/latent/{d['id']}")
    return f"<p id='latent-summary'><a href='{link}'>latent {d['id']}</a> {fires}{promotes}{flags_html(d['flags'])}</p>"


def steered(s, max_act: float, strength: float) -> str:
    """Both continuations side by side."""
    def col(cid: str, title: str, text: str) -> str:
        return (f"<section id='{cid}'><h2>{escape(title)}</h2><div class='gen'><span class='prompt'>{escape(s.prompt)}</span>"
                f"<b class='continuation'>{escape(text)}</b></div></section>")

    same = "<p class='note' id='same'>identical continuations</p>" if s.baseline_ids == s.steered_ids else ""
    return (f"<div class='cols'>{col('baseline', 'without steering', s.baseline)}"
            f"{col('steered', f'latent {s.latent} at strength {strength:g} (code {s.value:.3g} = {strength:g} × max {max_act:.3g})', s.steered)}"
            f"</div>{same}")
