// The activitystore console: the API of this server, read with the bearer
// token of the tab (sessionStorage), the filters kept in the URL.
"use strict";

const fields = ["type", "user", "module", "action", "resource", "since", "until"];
const labels = ["type", "user", "module", "action", "resource"];
const $ = (id) => document.getElementById(id);
let cursor = "";
let live = null; // the AbortController of the live tail
let timeline = null; // {start, end} in ms of the chart's range

function token() { return sessionStorage.getItem("activitystore-token") || ""; }

function headers() {
  const t = token();
  return t ? { Authorization: "Bearer " + t } : {};
}

// filters returns the filters of the form as URLSearchParams.
function filters(withRange = true) {
  const p = new URLSearchParams();
  for (const f of fields) {
    if (!withRange && (f === "since" || f === "until")) continue;
    for (const v of $("f-" + f).value.split(",")) {
      if (v.trim() !== "") p.append(f, v.trim());
    }
  }
  return p;
}

async function api(path, params) {
  const q = params && params.toString() ? "?" + params : "";
  const resp = await fetch("../" + path + q, { headers: headers() });
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) {
    throw new Error(body.error || resp.status + " " + resp.statusText);
  }
  return body;
}

function status(msg) { $("status").textContent = msg || ""; }

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text;
  td.title = text;
  return td;
}

function row(a, fresh) {
  const tr = document.createElement("tr");
  tr.dataset.id = a.id;
  tr.dataset.time = a.timestamp;
  tr.dataset.user = a.user_id || "";
  tr.dataset.type = a.type;
  if (fresh) tr.className = "new";
  for (const v of [a.timestamp.replace("T", " ").replace("Z", ""), a.type, a.user_id || "(system)", a.module, a.action, a.resource]) {
    tr.appendChild(cell(v || ""));
  }
  tr.addEventListener("click", () => {
    for (const r of document.querySelectorAll("#rows tr.selected")) r.classList.remove("selected");
    tr.classList.add("selected");
    $("raw").textContent = JSON.stringify(a, null, 2);
  });
  return tr;
}

async function loadPage(more) {
  const p = filters();
  p.set("limit", "50");
  if (more && cursor) p.set("cursor", cursor);
  const page = await api("v1/activities", p);
  if (!more) $("rows").replaceChildren();
  for (const a of page.activities) $("rows").appendChild(row(a, false));
  cursor = page.next_cursor;
  $("more").hidden = !cursor;
}

async function loadTimeline() {
  const p = filters();
  let bucket = "1h";
  const since = Date.parse(p.get("since") || ""), until = Date.parse(p.get("until") || "");
  if (!isNaN(since) && !isNaN(until) && until > since) {
    bucket = Math.max(1, Math.ceil((until - since) / 1000 / 60)) + "s";
  }
  p.set("bucket", bucket);
  let tl;
  try {
    tl = await api("v1/timeline", p);
  } catch (e) {
    p.set("bucket", "1d");
    tl = await api("v1/timeline", p);
  }
  $("bucket").textContent = "per " + tl.bucket;
  drawTimeline(tl.buckets);
}

function drawTimeline(buckets) {
  const svg = $("timeline");
  svg.replaceChildren();
  if (buckets.length === 0) { timeline = null; return; }
  const w = 1000, h = 120;
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  const max = Math.max(1, ...buckets.map((b) => b.count));
  const bw = w / buckets.length;
  const start = Date.parse(buckets[0].start);
  const step = buckets.length > 1 ? Date.parse(buckets[1].start) - start : 3600e3;
  timeline = { start, end: Date.parse(buckets[buckets.length - 1].start) + step };
  buckets.forEach((b, i) => {
    const r = document.createElementNS("http://www.w3.org/2000/svg", "rect");
    const bh = (b.count / max) * (h - 4);
    r.setAttribute("class", "bar");
    r.setAttribute("x", i * bw);
    r.setAttribute("width", Math.max(bw - 1, 0.5));
    r.setAttribute("y", h - bh);
    r.setAttribute("height", bh);
    const t = document.createElementNS("http://www.w3.org/2000/svg", "title");
    t.textContent = `${b.start}: ${b.count}`;
    r.appendChild(t);
    svg.appendChild(r);
  });
}

// Dragging over the chart zooms the list to the range.
function timeAt(x) {
  const box = $("timeline").getBoundingClientRect();
  const f = Math.min(1, Math.max(0, (x - box.left) / box.width));
  return timeline.start + f * (timeline.end - timeline.start);
}

function setupZoom() {
  const svg = $("timeline");
  let x0 = null, sel = null;
  svg.addEventListener("mousedown", (e) => {
    if (!timeline) return;
    x0 = e.clientX;
    sel = document.createElementNS("http://www.w3.org/2000/svg", "rect");
    sel.setAttribute("class", "sel");
    sel.setAttribute("y", 0);
    sel.setAttribute("height", 120);
    svg.appendChild(sel);
  });
  svg.addEventListener("mousemove", (e) => {
    if (x0 === null) return;
    const box = svg.getBoundingClientRect();
    const a = Math.min(x0, e.clientX) - box.left, b = Math.max(x0, e.clientX) - box.left;
    sel.setAttribute("x", (a / box.width) * 1000);
    sel.setAttribute("width", ((b - a) / box.width) * 1000);
  });
  window.addEventListener("mouseup", (e) => {
    if (x0 === null) return;
    const a = timeAt(Math.min(x0, e.clientX)), b = timeAt(Math.max(x0, e.clientX));
    x0 = null;
    if (b - a < 1000) { refresh(); return; }
    $("f-since").value = new Date(Math.floor(a / 1000) * 1000).toISOString().replace(".000Z", "Z");
    $("f-until").value = new Date(Math.ceil(b / 1000) * 1000).toISOString().replace(".000Z", "Z");
    apply();
  });
}

async function loadTops() {
  const box = $("tops");
  box.replaceChildren();
  for (const f of ["type", "user_id", "module", "action", "resource"]) {
    const p = filters();
    p.set("field", f);
    p.set("limit", "5");
    const res = await api("v1/count_by", p);
    const h = document.createElement("h3");
    h.textContent = f;
    const ol = document.createElement("ol");
    ol.dataset.field = f;
    for (const c of res.counts) {
      const li = document.createElement("li");
      const a = document.createElement("a");
      a.textContent = (c.value || "(none)") + " ";
      a.addEventListener("click", () => {
        $("f-" + (f === "user_id" ? "user" : f)).value = c.value;
        apply();
      });
      li.appendChild(a);
      li.appendChild(document.createTextNode(c.count));
      ol.appendChild(li);
    }
    box.append(h, ol);
  }
}

async function refresh() {
  stopLive();
  status("");
  try {
    await loadPage(false);
    await Promise.all([loadTimeline(), loadTops()]);
    document.body.dataset.loaded = String(Date.now());
  } catch (e) {
    status(e.message);
    document.body.dataset.loaded = String(Date.now());
  }
  if ($("live").checked) startLive();
}

// apply keeps the filters in the URL and reloads every view.
function apply() {
  const p = filters();
  history.replaceState(null, "", p.toString() ? "?" + p : location.pathname);
  refresh();
}

function stopLive() {
  if (live) live.abort();
  live = null;
  document.body.dataset.live = "off";
}

// startLive reads /v1/tail (with the token, which EventSource cannot send)
// and puts each new activity at the top of the list.
async function startLive() {
  stopLive();
  const ctl = new AbortController();
  live = ctl;
  const p = filters(false);
  try {
    const resp = await fetch("../v1/tail" + (p.toString() ? "?" + p : ""), { headers: headers(), signal: ctl.signal });
    if (!resp.ok) {
      const body = await resp.json().catch(() => ({}));
      throw new Error(body.error || resp.status + " " + resp.statusText);
    }
    document.body.dataset.live = "on";
    const reader = resp.body.getReader();
    const dec = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const ev = buf.slice(0, i);
        buf = buf.slice(i + 2);
        let kind = "message", data = "";
        for (const line of ev.split("\n")) {
          if (line.startsWith("event:")) kind = line.slice(6).trim();
          if (line.startsWith("data:")) data += line.slice(5).trim();
        }
        try {
          if (kind === "activity" && data) {
            $("rows").prepend(row(JSON.parse(data), true));
          } else if (kind === "lagged" && data) {
            status("live: " + JSON.parse(data).missed + " activities came too fast to show");
          } else if (kind === "error" && data) {
            status(JSON.parse(data).error);
          }
        } catch (e) {
          status("live: " + e.message);
        }
      }
    }
  } catch (e) {
    if (ctl.signal.aborted) return;
    status("live: " + e.message);
  }
  if (live === ctl) document.body.dataset.live = "off";
}

function init() {
  const params = new URLSearchParams(location.search);
  for (const f of fields) $("f-" + f).value = params.getAll(f).join(",");
  $("token").value = token();
  $("auth").addEventListener("submit", (e) => {
    e.preventDefault();
    sessionStorage.setItem("activitystore-token", $("token").value.trim());
    refresh();
  });
  $("filters").addEventListener("submit", (e) => { e.preventDefault(); apply(); });
  $("clear").addEventListener("click", () => {
    for (const f of fields) $("f-" + f).value = "";
    apply();
  });
  $("more").addEventListener("click", () => loadPage(true).catch((e) => status(e.message)));
  $("live").addEventListener("change", () => ($("live").checked ? startLive() : stopLive()));
  setupZoom();
  refresh();
}

init();
