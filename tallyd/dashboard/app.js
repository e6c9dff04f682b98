// The dashboard's behaviour: bars drawn from the JSON API, drill-down without a
// reload (the state stays in the URL), live updates over server-sent events, and
// the badge builder. Every value goes into the page as text, never as markup.
"use strict";

const MONTHS = ["January", "February", "March", "April", "May", "June", "July",
  "August", "September", "October", "November", "December"];
const UNITS = ["Year", "Month", "Day", "Hour", "Minute"];
const main = document.getElementById("dashboard");
const pick = document.getElementById("pick");
const breakdowns = JSON.parse(main.dataset.breakdowns);
const byId = (id) => document.getElementById(id);
const field = (form, name) => form.elements.namedItem(name);
const pad = (n) => String(n).padStart(2, "0");
const num = (n) => n.toLocaleString("en-US");
let loads = 0;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  node.append(...children);
  return node;
}

// The view: account, event and period parts ([2013, 9] for September 2013).
function current() {
  const period = field(pick, "period").value.split("/").filter(Boolean).map(Number);
  return { account: field(pick, "account").value || "all", event: field(pick, "event").value, period };
}

function link(v, period) {
  const when = period.map((p, i) => (i ? pad(p) : p)).join("/");
  return `/?account=${encodeURIComponent(v.account)}&event=${encodeURIComponent(v.event)}&period=${when}`;
}

function heading(p) {
  const [y, m, d, h] = p;
  if (!p.length) return "All time";
  if (p.length === 1) return String(y);
  const month = `${MONTHS[m - 1]} ${y}`;
  if (p.length === 2) return month;
  return p.length === 3 ? `${d} ${month}` : `${d} ${month}, ${pad(h)}:00`;
}

// A segment's label, and the period it opens (null for a minute).
function segment(p, s) {
  switch (p.length) {
    case 0: return [String(s), [s]];
    case 1: return [MONTHS[s - 1].slice(0, 3), [...p, s]];
    case 2: return [String(s), [...p, s]];
    case 3: return [`${pad(s)}:00`, [...p, s]];
    default: return [`:${pad(s)}`, null];
  }
}

function api(v, kind, period) {
  const parts = period.map((p, i) => (i ? pad(p) : p));
  const names = [v.account, v.event].map(encodeURIComponent);
  return `/api/stats/${kind}/${[...names, ...parts].join("/")}`;
}

async function get(url) {
  const r = await fetch(url, { headers: { accept: "application/json" } });
  const body = await r.json();
  if (!r.ok) throw new Error(body.detail || body.error || r.statusText);
  return body;
}

function drawPeriod(v, answer) {
  const p = v.period;
  byId("view-title").textContent = heading(p);
  document.title = `${v.account} · ${v.event} · ${heading(p)} · tallyd`;
  const crumbs = [];
  for (let up = p.slice(0, -1); crumbs.length < p.length; up = up.slice(0, -1)) {
    crumbs.unshift(el("a", { href: link(v, up) }, heading(up)));
  }
  byId("crumbs").replaceChildren(...crumbs.flatMap((a, i) => (i ? [" › ", a] : [a])));
  const counts = Object.entries(answer.data);
  const most = Math.max(1, ...counts.map(([, n]) => n));
  const bars = el("ol", { class: "bars", "aria-label": `${v.event} for ${v.account}, ${heading(p)}` });
  const rows = [];
  for (const [key, n] of counts) {
    const [label, opens] = segment(p, Number(key));
    const fill = el("span", { class: "fill" });
    fill.style.height = `${(100 * n) / most}%`;
    const attrs = { class: "bar", "data-count": n, "aria-label": `${label}: ${num(n)}`, title: `${label}: ${num(n)}` };
    const bar = el(opens ? "a" : "span", opens ? { ...attrs, href: link(v, opens) } : attrs,
      el("span", { class: "track" }, fill), el("span", { class: "label", "aria-hidden": "true" }, label));
    bars.append(el("li", {}, bar));
    const name = opens ? el("a", { href: link(v, opens) }, label) : label;
    rows.push(el("tr", {}, el("th", { scope: "row" }, name), el("td", {}, num(n))));
  }
  byId("chart").replaceChildren(bars);
  const table = byId("counts");
  table.caption.textContent = `${v.event} for ${v.account}, ${heading(p)}`;
  table.tHead.rows[0].cells[0].textContent = UNITS[p.length];
  table.tBodies[0].replaceChildren(...rows);
  table.tFoot.rows[0].cells[1].textContent = num(answer.total);
}

function drawFunnel(v, answer) {
  const section = byId("funnel");
  section.hidden = !answer;
  if (!answer) return;
  const prop = breakdowns[v.event];
  byId("funnel-title").textContent = `By ${prop}, ${heading(v.period.slice(0, 2))}`;
  section.querySelector("thead th").textContent = prop;
  const rows = Object.entries(answer.data).map(([value, n]) => el("tr", {},
    el("th", { scope: "row" }, value), el("td", {}, num(n)),
    el("td", {}, `${Math.round((100 * n) / answer.total)}%`)));
  section.querySelector("tbody").replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colspan: 3 }, "none yet"))]));
}

function drawTop(id, answer) {
  const rows = answer.top.map((r) => el("tr", {}, el("th", { scope: "row" }, r.account), el("td", {}, num(r.count))));
  byId(id).tBodies[0].replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", {}, "none yet"))]));
}

function notice(message) {
  let box = byId("notice");
  if (!box) {
    box = el("p", { id: "notice", class: "notice", role: "alert" });
    pick.after(box);
  }
  box.hidden = !message;
  box.textContent = message || "";
}

// Read the current view's numbers and draw them; a later load wins over an earlier one.
async function load() {
  const mine = ++loads;
  const v = current();
  const event = encodeURIComponent(v.event);
  const funnel = breakdowns[v.event] && v.period.length ? get(api(v, "funnels", v.period.slice(0, 2))) : null;
  try {
    const answers = await Promise.all([get(api(v, "track", v.period)), funnel,
      get(`/api/top?event=${event}&period=day`), get(`/api/top?event=${event}&period=month`)]);
    if (mine !== loads) return;
    const [period, breakdown, day, month] = answers;
    drawPeriod(v, period);
    drawFunnel(v, breakdown);
    drawTop("top_day", day);
    drawTop("top_month", month);
    byId("top-title").textContent = `Top accounts for ${v.event}`;
    notice("");
  } catch (err) {
    if (mine === loads) notice(err.message);
  }
}

// Choices for the form: accounts that sent the event, events the account sent.
async function choices() {
  const v = current();
  const [accounts, events] = await Promise.all([
    get(`/api/accounts?event=${encodeURIComponent(v.event)}&limit=1000`),
    get(v.account === "all" ? "/api/stats/track" : `/api/stats/track/${encodeURIComponent(v.account)}`),
  ]);
  byId("accounts").replaceChildren(...["all", ...accounts.accounts].map((a) => el("option", { value: a })));
  const names = events.events.includes(v.event) ? events.events : [v.event, ...events.events];
  field(pick, "event").replaceChildren(...names.map((e) => {
    const option = el("option", {}, e);
    option.selected = e === v.event;
    return option;
  }));
}

function show(params, push) {
  for (const name of ["account", "event", "period"]) {
    if (params.has(name)) field(pick, name).value = params.get(name);
  }
  if (push) history.pushState(null, "", link(current(), current().period));
  load();
}

function navigate() {
  document.addEventListener("click", (e) => {
    const a = e.target.closest("a");
    if (!a || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    const url = new URL(a.href);
    if (url.origin !== location.origin || url.pathname !== "/" || !url.search) return;
    e.preventDefault();
    show(url.searchParams, true);
  });
  pick.addEventListener("submit", (e) => {
    e.preventDefault();
    show(new URLSearchParams(new FormData(pick)), true);
  });
  for (const name of ["account", "event"]) {
    field(pick, name).addEventListener("change", () => {
      show(new URLSearchParams(new FormData(pick)), true);
      choices().catch((err) => notice(err.message));
    });
  }
  window.addEventListener("popstate", () => show(new URLSearchParams(location.search), false));
}

// A server-sent event after each flush: re-read the view (at most once per burst).
function live() {
  if (!window.EventSource) return;
  const status = byId("live");
  let timer = 0;
  let stale = false;
  const changed = () => {
    if (timer) return;
    timer = setTimeout(() => {
      timer = 0;
      if (document.hidden) stale = true;
      else load();
    }, 200);
  };
  const connect = () => {
    const source = new EventSource("/api/live");
    status.textContent = "Connecting…";
    source.onopen = () => { status.textContent = "Live"; status.className = "on"; };
    source.onerror = () => {
      status.textContent = "Reconnecting…";
      status.className = "";
      // A refusal (503: too many streams) is not retried by the browser itself.
      if (source.readyState === EventSource.CLOSED) setTimeout(connect, 5000 + Math.random() * 5000);
    };
    source.addEventListener("flush", changed);
  };
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && stale) {
      stale = false;
      load();
    }
  });
  connect();
}

// Why a badge id cannot be one, or "". The server refuses empty parts between
// slashes; a `.` or `..` part it would take, but a browser resolves it before asking
// (`/badge/../../api/x.svg` is `/api/x.svg`), encoded or not, so no badge could show it.
function badIdProblem(id) {
  if (!id) return "Give the badge an id: an account, like owner/name.";
  const parts = id.split("/");
  if (parts.includes("")) return "An id's parts between slashes may not be empty.";
  if (parts.some((p) => p === "." || p === "..")) return "An id's parts may not be . or ..: a browser would read them as folders.";
  return "";
}

// A path segment with every character a URL or Markdown gives a meaning to encoded,
// `(` and `)` too (they would end a Markdown link).
const idPart = (part) => encodeURIComponent(part).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);

function badge() {
  const form = byId("badge-form");
  const value = (name) => field(form, name).value.trim();
  const problem = el("p", { id: "badge-problem", class: "problem", role: "alert" });
  form.after(problem);
  const update = () => {
    const id = value("id");
    problem.textContent = badIdProblem(id);
    problem.hidden = !problem.textContent;
    if (problem.textContent) {
      byId("badge-preview").removeAttribute("src");
      byId("badge-markdown").value = "";
      return;
    }
    const query = new URLSearchParams({ label: value("label"), style: value("style"), metric: value("metric"), color: value("color").replace("#", "") });
    const path = `/badge/${id.split("/").map(idPart).join("/")}.svg?${query}`;
    // The preview does not count: only the readers of the Markdown do.
    byId("badge-preview").src = `${path}&increment=0`;
    // The label is the image's alt text: `\`, `[` and `]` escaped, or a label
    // ending in `\` would escape the `]` that closes it.
    const alt = value("label").replace(/[\\[\]]/g, (c) => `\\${c}`);
    byId("badge-markdown").value = `![${alt}](${location.origin}${path})`;
  };
  form.addEventListener("input", update);
  form.addEventListener("submit", (e) => e.preventDefault());
  update();
}

byId("table").open = false;
history.replaceState(null, "", link(current(), current().period));
navigate();
load();
live();
badge();
