/**
 * The Lens page: one self-contained HTML document, its CSS and script inline, nothing loaded from
 * anywhere else (no CDN, no font, no image), so it works offline and needs no build step.
 *
 * The script reads `api/snapshot` every 2 s and draws, per policy, a step chart of allowed and denied
 * decisions per second over the history (inline SVG, drawn by hand); the top denied keys; the guards
 * (slots in flight against the ceiling); and the live denials, which it follows on `api/denials` with an
 * `EventSource`, newest first (the last 200). Everything the server sends is put in the page as text
 * (`textContent`, attributes), never as markup. The answer's Content-Security-Policy allows this script
 * and this style only (by their hashes), and connections to the Lens itself.
 *
 * Hooks for tests and tools: `#live[data-state]` is `connecting`, `open`, `reconnecting` or `refused`;
 * each chart (`svg.chart[data-policy]`) carries `data-intervals` (intervals drawn), `data-max-rate` and
 * `data-max-denied` (the highest rates drawn, per second) and `data-baseline` (the y of a zero rate);
 * each live denial is an `li` with `data-policy` and `data-key`; `body[data-ready]` is set once the first
 * snapshot is drawn.
 *
 * @since 0.3.0
 */
import { createHash } from "node:crypto"

const STYLE = `
:root { --bg: #f7f8fa; --card: #fff; --fg: #1c2430; --muted: #667085; --line: #e4e7ec;
  --allowed: #12a150; --allowed-fill: rgba(18,161,80,.16); --denied: #d92d20; --accent: #2e6bd8; }
@media (prefers-color-scheme: dark) {
  :root { --bg: #0f1419; --card: #171d24; --fg: #e6e9ee; --muted: #98a2b3; --line: #2a323c;
    --allowed-fill: rgba(18,161,80,.22); }
}
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  background: var(--bg); color: var(--fg); }
header { display: flex; flex-wrap: wrap; align-items: baseline; gap: 6px 18px; padding: 14px 22px;
  border-bottom: 1px solid var(--line); background: var(--card); }
header h1 { font-size: 18px; margin: 0; }
header .meta { color: var(--muted); }
#live { margin-left: auto; font-weight: 600; }
#live::before { content: ""; display: inline-block; width: 9px; height: 9px; border-radius: 50%;
  margin-right: 6px; background: var(--muted); }
#live[data-state="open"]::before { background: var(--allowed); }
#live[data-state="reconnecting"]::before, #live[data-state="refused"]::before { background: var(--denied); }
main { padding: 16px 22px 28px; display: grid; gap: 16px; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 12px 16px; }
h2 { font-size: 15px; margin: 0 0 10px; }
h2 small { color: var(--muted); font-weight: 400; }
#banner { display: none; background: #fef3f2; color: #912018; border: 1px solid #fda29b; border-radius: 8px;
  padding: 10px 14px; }
#banner.shown { display: block; }
#charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(420px, 1fr)); gap: 14px; }
.policy h3 { font-size: 14px; margin: 0; display: flex; gap: 8px; align-items: baseline; flex-wrap: wrap; }
.chip { font-size: 11px; color: var(--muted); border: 1px solid var(--line); border-radius: 10px; padding: 0 7px; }
.stats { color: var(--muted); font-size: 12px; margin: 2px 0 4px; }
.stats b.allowed { color: var(--allowed); } .stats b.denied { color: var(--denied); }
svg.chart { width: 100%; height: auto; display: block; }
svg.chart .grid { stroke: var(--line); stroke-width: 1; }
svg.chart text { fill: var(--muted); font-size: 10px; }
svg.chart .area { fill: var(--allowed-fill); stroke: none; }
svg.chart .allowed { fill: none; stroke: var(--allowed); stroke-width: 1.6; }
svg.chart .denied { fill: none; stroke: var(--denied); stroke-width: 1.8; }
.columns { display: grid; grid-template-columns: repeat(auto-fit, minmax(360px, 1fr)); gap: 16px; }
table { width: 100%; border-collapse: collapse; }
th, td { text-align: left; padding: 4px 6px; border-bottom: 1px solid var(--line); }
th { color: var(--muted); font-weight: 500; font-size: 12px; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.key { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 12px; max-width: 360px;
  overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.guard { display: grid; grid-template-columns: 140px 1fr 110px; gap: 10px; align-items: center; margin: 6px 0; }
.bar { height: 12px; background: var(--line); border-radius: 6px; overflow: hidden; }
.bar > div { height: 100%; background: var(--accent); width: 0; }
.bar.full > div { background: var(--denied); }
.guard .detail { grid-column: 2 / 4; color: var(--muted); font-size: 12px; margin-top: -4px; }
.empty { color: var(--muted); }
#denials { list-style: none; margin: 0; padding: 0; max-height: 420px; overflow-y: auto; }
#denials li { display: grid; grid-template-columns: 105px 130px 1fr 90px 130px; gap: 10px; padding: 3px 6px;
  border-bottom: 1px solid var(--line); font-size: 13px; }
#denials li.past { color: var(--muted); }
#denials li.fresh { animation: flash 1.5s ease-out; }
@keyframes flash { from { background: rgba(217,45,32,.22); } to { background: transparent; } }
#denials .axis { color: var(--muted); }
`

const SCRIPT = `
"use strict";
(function () {
  var SVG = "http://www.w3.org/2000/svg";
  var MAX_DENIALS = 200;
  var byId = function (id) { return document.getElementById(id); };
  var el = function (tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = String(text);
    return e;
  };
  var sv = function (tag, attrs) {
    var e = document.createElementNS(SVG, tag);
    for (var k in attrs) e.setAttribute(k, String(attrs[k]));
    return e;
  };
  var fmt = function (n) {
    if (n >= 1e6) return (n / 1e6).toFixed(1) + "M";
    if (n >= 1e4) return (n / 1e3).toFixed(1) + "k";
    if (n >= 100 || n === Math.round(n)) return String(Math.round(n));
    return n.toFixed(1);
  };
  var clock = function (ms) {
    var d = new Date(ms);
    var pad = function (v, w) { return String(v).padStart(w, "0"); };
    return pad(d.getHours(), 2) + ":" + pad(d.getMinutes(), 2) + ":" + pad(d.getSeconds(), 2) + "." +
      pad(d.getMilliseconds(), 3);
  };
  var ago = function (ms) {
    return ms >= 120000 ? Math.round(ms / 60000) + " min" : Math.round(ms / 1000) + " s";
  };
  var wait = function (ms) { return ms >= 1000 ? (ms / 1000).toFixed(1) + " s" : Math.round(ms) + " ms"; };
  var niceMax = function (v) {
    if (v <= 1) return 1;
    var p = Math.pow(10, Math.floor(Math.log10(v)));
    var steps = [1, 2, 2.5, 5, 10];
    for (var i = 0; i < steps.length; i++) if (steps[i] * p >= v) return steps[i] * p;
    return 10 * p;
  };
  var setLive = function (state, text) {
    var live = byId("live");
    live.dataset.state = state;
    live.textContent = text;
  };
  var showBanner = function (text) {
    var banner = byId("banner");
    banner.textContent = text;
    banner.className = text ? "shown" : "";
  };

  /* One policy's chart: allowed (area and line) and denied (line) per second, one step per interval. */
  var drawChart = function (svg, snap, policy) {
    var W = 600, H = 160, L = 46, R = 10, T = 10, B = 22;
    var at = snap.at;
    var end = at.length ? at[at.length - 1] : snap.meta.generatedAt;
    /* From the first sample (a minute at least) to the whole history: a young server fills the width. */
    var span = Math.min(Math.max(snap.historyMs, 1000), Math.max(60000, end - snap.since));
    var left = end - span;
    var x = function (t) { return L + Math.max(0, (t - left) / span) * (W - L - R); };
    var steps = [];
    var top = 0, topDenied = 0;
    for (var i = 0; i < at.length; i++) {
      var start = i === 0 ? snap.since : at[i - 1];
      var seconds = (at[i] - start) / 1000;
      if (seconds <= 0) continue;
      var a = policy.allowedHistory[i] / seconds, d = policy.deniedHistory[i] / seconds;
      steps.push({ from: start, to: at[i], allowed: a, denied: d });
      top = Math.max(top, a, d);
      topDenied = Math.max(topDenied, d);
    }
    var max = niceMax(top);
    var y = function (r) { return T + (1 - r / max) * (H - T - B); };
    var base = y(0);
    svg.replaceChildren();
    svg.setAttribute("viewBox", "0 0 " + W + " " + H);
    [0, max / 2, max].forEach(function (r) {
      svg.append(sv("line", { x1: L, x2: W - R, y1: y(r), y2: y(r), "class": "grid" }));
      var label = sv("text", { x: L - 6, y: y(r) + 3, "text-anchor": "end" });
      label.textContent = fmt(r) + "/s";
      svg.append(label);
    });
    [[span, "-" + ago(span)], [span / 2, "-" + ago(span / 2)], [0, "now"]]
      .forEach(function (tick) {
        var label = sv("text", { x: x(end - tick[0]), y: H - 6, "text-anchor": tick[0] === 0 ? "end" : "start" });
        label.textContent = tick[1];
        svg.append(label);
      });
    var line = function (key) {
      var pts = [];
      steps.forEach(function (s) {
        pts.push(x(s.from).toFixed(1) + "," + y(s[key]).toFixed(1));
        pts.push(x(s.to).toFixed(1) + "," + y(s[key]).toFixed(1));
      });
      return pts;
    };
    var allowed = line("allowed"), denied = line("denied");
    if (steps.length) {
      var first = x(steps[0].from).toFixed(1), last = x(steps[steps.length - 1].to).toFixed(1);
      svg.append(sv("polygon", {
        "class": "area",
        points: [first + "," + base.toFixed(1)].concat(allowed, [last + "," + base.toFixed(1)]).join(" ")
      }));
    }
    svg.append(sv("polyline", { "class": "allowed", points: allowed.join(" ") }));
    svg.append(sv("polyline", { "class": "denied", points: denied.join(" ") }));
    svg.dataset.intervals = String(steps.length);
    svg.dataset.maxRate = String(top);
    svg.dataset.maxDenied = String(topDenied);
    svg.dataset.baseline = base.toFixed(1);
  };

  var cards = new Map();
  var renderPolicies = function (snap) {
    var host = byId("charts");
    var windowS = Math.round(snap.meta.windowMs / 1000);
    snap.policies.forEach(function (p) {
      var card = cards.get(p.name);
      if (!card) {
        card = { root: el("div", "policy"), title: el("h3"), stats: el("div", "stats"), svg: sv("svg", {}) };
        card.svg.setAttribute("class", "chart");
        card.svg.dataset.policy = p.name;
        card.svg.setAttribute("role", "img");
        card.svg.setAttribute("aria-label", "decisions per second of " + p.name);
        card.root.append(card.title, card.stats, card.svg);
        host.append(card.root);
        cards.set(p.name, card);
      }
      card.title.replaceChildren(el("span", "", p.name),
        el("span", "chip", p.kind + (p.strategy ? " · " + p.strategy : "")),
        el("span", "chip", p.allowedTotal + p.deniedTotal > 0 ? "limit " + fmt(p.limit) : "no decision yet"));
      card.stats.replaceChildren("last " + windowS + " s: ", el("b", "allowed", fmt(p.allowed)), " allowed, ",
        el("b", "denied", fmt(p.denied)), " denied · since start: " + fmt(p.allowedTotal) + " / " +
          fmt(p.deniedTotal));
      drawChart(card.svg, snap, p);
    });
    if (!snap.policies.length) host.replaceChildren(el("p", "empty", "no policies"));
  };

  var renderTop = function (snap) {
    var rows = [];
    snap.policies.forEach(function (p) {
      p.topDenied.forEach(function (k) { rows.push({ policy: p.name, key: k.key, count: k.count }); });
    });
    rows.sort(function (a, b) { return b.count - a.count; });
    var body = byId("top-denied");
    body.replaceChildren();
    rows.slice(0, 15).forEach(function (r) {
      var tr = el("tr");
      var key = el("td", "key", r.key);
      key.title = r.key;
      tr.append(el("td", "", r.policy), key, el("td", "num", fmt(r.count)));
      body.append(tr);
    });
    if (!rows.length) {
      var tr = el("tr"), td = el("td", "empty", "no denials yet");
      td.colSpan = 3;
      tr.append(td);
      body.append(tr);
    }
  };

  var renderGuards = function (snap) {
    var host = byId("guards");
    host.replaceChildren();
    snap.guards.forEach(function (g) {
      var row = el("div", "guard");
      row.dataset.guard = g.name;
      var bar = el("div", g.limit > 0 && g.inflight >= g.limit ? "bar full" : "bar");
      var fill = el("div");
      fill.style.width = (g.limit > 0 ? Math.min(100, (100 * g.inflight) / g.limit) : 0) + "%";
      bar.append(fill);
      row.append(el("div", "", g.name), bar, el("div", "num", fmt(g.inflight) + " / " + fmt(g.limit) + " in flight"));
      if (g.nodes > 0) {
        row.append(el("div", "detail", "share " + fmt(g.share) + " of " + fmt(g.lGlobal) + " across " + g.nodes +
          " node(s)" + (g.fenced ? " · fenced" : "")));
      }
      host.append(row);
    });
    if (!snap.guards.length) host.append(el("p", "empty", "no concurrency guards"));
  };

  var addDenial = function (d, past) {
    var list = byId("denials");
    var li = el("li", past ? "past" : "fresh");
    li.dataset.policy = d.policy;
    li.dataset.key = d.key;
    var key = el("span", "key", d.key);
    key.title = d.key;
    li.append(el("span", "", clock(d.at)), el("span", "", d.policy), key, el("span", "axis", d.axis || "rate"),
      el("span", "", "retry in " + wait(d.retryAfterMs)));
    list.prepend(li);
    while (list.children.length > MAX_DENIALS) list.lastElementChild.remove();
    var empty = byId("no-denials");
    if (empty) empty.remove();
  };

  var render = function (snap) {
    byId("node").textContent = (snap.meta.nodeId || "server") + " · " + snap.meta.lensVersion;
    byId("updated").textContent = "updated " + clock(snap.meta.generatedAt);
    renderPolicies(snap);
    renderTop(snap);
    renderGuards(snap);
  };

  var load = function () {
    return fetch("api/snapshot", { cache: "no-store", credentials: "same-origin" }).then(function (r) {
      if (r.status === 401 || r.status === 403) {
        return r.text().then(function (t) { throw { refused: true, text: t.trim() }; });
      }
      if (!r.ok) throw { refused: false, text: "the snapshot answered " + r.status };
      return r.json();
    });
  };

  var follow = function () {
    var source = new EventSource("api/denials");
    source.onopen = function () { setLive("open", "live"); };
    source.onerror = function () {
      setLive(source.readyState === EventSource.CLOSED ? "refused" : "reconnecting",
        source.readyState === EventSource.CLOSED ? "live stream refused" : "reconnecting");
    };
    source.addEventListener("denial", function (e) { addDenial(JSON.parse(e.data), false); });
  };

  var refresh = function () {
    load().then(function (snap) {
      showBanner("");
      render(snap);
    }, function (e) {
      showBanner(e && e.text ? e.text : "cannot reach the server");
    }).then(function () { setTimeout(refresh, 2000); });
  };

  /* First the snapshot (its recent denials fill the list), then the live stream from there on. */
  load().then(function (snap) {
    render(snap);
    snap.recentDenials.slice(-50).forEach(function (d) { addDenial(d, true); });
    document.body.dataset.ready = "1";
    follow();
    setTimeout(refresh, 2000);
  }, function (e) {
    setLive("refused", "refused");
    showBanner(e && e.text ? e.text : "cannot reach the server");
  });
})();
`

const BODY = `<header>
<h1>ThrottleKit Lens</h1>
<span class="meta" id="node"></span>
<span class="meta" id="updated"></span>
<span id="live" data-state="connecting">connecting</span>
</header>
<main>
<div id="banner" role="alert"></div>
<section>
<h2>Decisions per second <small>allowed (green) and denied (red), up to the last 10 minutes</small></h2>
<div id="charts"></div>
</section>
<div class="columns">
<section>
<h2>Top denied keys <small>since start</small></h2>
<table><thead><tr><th>policy</th><th>key</th><th class="num">denied</th></tr></thead>
<tbody id="top-denied"></tbody></table>
</section>
<section>
<h2>Guards <small>concurrency in flight / ceiling</small></h2>
<div id="guards"></div>
</section>
</div>
<section>
<h2>Live denials <small>newest first</small></h2>
<ol id="denials"><li id="no-denials" class="past">waiting for denials</li></ol>
</section>
</main>`

const sha256 = (text: string): string => `'sha256-${createHash("sha256").update(text, "utf8").digest("base64")}'`

/**
 * The page and the Content-Security-Policy to send with it (the inline script and style allowed by hash).
 *
 * @since 0.3.0
 * @category constructors
 */
export const make = (): { readonly html: string; readonly contentSecurityPolicy: string } => ({
  html: `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>ThrottleKit Lens</title>
<style>${STYLE}</style>
</head>
<body>
${BODY}
<script>${SCRIPT}</script>
</body>
</html>
`,
  contentSecurityPolicy: [
    "default-src 'none'",
    `script-src ${sha256(SCRIPT)}`,
    `style-src ${sha256(STYLE)}`,
    "connect-src 'self'",
    "img-src 'none'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'"
  ].join("; ")
})
