// llmrr dashboard: one page, hash routes, no dependencies. Every number shown comes from the
// gateway's admin API (served again at ./api/ for a signed-in session); nothing is invented:
// a panel whose data does not exist says so.
"use strict";

const session = { csrf: "", who: null };
let refreshTimer = null;
// Bumped at every page change: a page still loading when another opens must not start its
// refresh timer afterwards.
let generation = 0;

// ---------- helpers ----------

function el(tag, attrs, ...children) {
  const svg = ["svg", "rect", "text", "line", "g", "title"].includes(tag);
  const node = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(method, path, body) {
  const headers = { accept: "application/json" };
  if (body !== undefined) headers["content-type"] = "application/json";
  if (method !== "GET") headers["x-csrf-token"] = session.csrf;
  const resp = await fetch("api/" + path, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!resp.ok) {
    const message = (data && data.error && data.error.message) || text || resp.statusText;
    if (resp.status === 401) { showLogin(message); }
    throw new ApiError(resp.status, message);
  }
  return data;
}

function toast(message) {
  const t = document.getElementById("toast");
  t.textContent = message;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.textContent = ""; }, 5000);
}

const usdFmt = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD", maximumFractionDigits: 4 });
// Sub-cent amounts keep three significant digits ($0.00000210), not "$0.00".
const smallUsdFmt = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD", maximumSignificantDigits: 3 });
function usd(v) {
  const n = typeof v === "string" ? Number(v) : v;
  if (n === null || n === undefined || Number.isNaN(n)) return "–";
  return n !== 0 && Math.abs(n) < 0.01 ? smallUsdFmt.format(n) : usdFmt.format(n);
}
function num(v, digits) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  return Number(v).toLocaleString("en-US", { maximumFractionDigits: digits === undefined ? 2 : digits });
}
function ms(v) { return v === null || v === undefined ? "–" : num(v, 1) + " ms"; }
function pct(v) { return v === null || v === undefined ? "–" : num(v * 100, 1) + "%"; }
function when(msOrIso) {
  if (msOrIso === null || msOrIso === undefined) return "–";
  const d = new Date(msOrIso);
  return Number.isNaN(d.getTime()) ? String(msOrIso) : d.toLocaleString();
}

function card(label, value, note, id) {
  return el("div", { class: "card", "data-metric": id },
    el("div", { class: "label" }, label),
    el("div", { class: "value" }, value),
    note ? el("div", { class: "note" }, note) : null);
}

// A table: columns are [header, cell(row) -> node|text, numeric?].
function table(caption, columns, rows, empty) {
  if (!rows.length) return el("p", { class: "muted" }, empty || "Nothing yet.");
  return el("div", { class: "scroll" },
    el("table", {},
      el("caption", { class: "sr-only" }, caption),
      el("thead", {}, el("tr", {}, columns.map(([h, , n]) => el("th", { scope: "col", class: n ? "num" : null }, h)))),
      el("tbody", {}, rows.map((r) => el("tr", {}, columns.map(([, f, n]) => el("td", { class: n ? "num" : null }, f(r))))))));
}

// Horizontal bars, one per item ({label, value}); the values are in data-value for readers
// and tests, and the same numbers are in a table next to it.
function barChart(title, items, format) {
  const width = 640, rowH = 26, labelW = 200, valueW = 110;
  const max = Math.max(0, ...items.map((i) => i.value));
  const svg = el("svg", {
    class: "chart", viewBox: `0 0 ${width} ${Math.max(1, items.length) * rowH + 4}`,
    role: "img", "aria-label": title,
  }, el("title", {}, title));
  items.forEach((item, i) => {
    const y = i * rowH + 2;
    const w = max > 0 ? Math.max(1, ((width - labelW - valueW) * item.value) / max) : 1;
    svg.append(
      el("text", { x: 0, y: y + 17 }, item.label.length > 28 ? item.label.slice(0, 27) + "…" : item.label),
      el("rect", { class: "bar", x: labelW, y: y + 4, width: w, height: rowH - 8,
        "data-label": item.label, "data-value": item.value }),
      el("text", { x: labelW + w + 6, y: y + 17 }, format(item.value)));
  });
  return svg;
}

function form(fields, submitLabel, onSubmit) {
  const f = el("form", { class: "inline" });
  for (const fd of fields) {
    if (fd.type === "checkbox") {
      f.append(el("label", { class: "check" }, el("input", { type: "checkbox", name: fd.name }), fd.label));
    } else if (fd.options) {
      f.append(el("label", {}, fd.label, el("select", { name: fd.name },
        fd.options.map(([v, t]) => el("option", { value: v, selected: v === fd.value }, t)))));
    } else {
      f.append(el("label", {}, fd.label, el("input", {
        name: fd.name, type: fd.type || "text", required: fd.required, placeholder: fd.placeholder,
        value: fd.value, step: fd.step, min: fd.min, autocomplete: "off",
      })));
    }
  }
  const button = el("button", { type: "submit" }, submitLabel);
  f.append(button);
  f.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const values = {};
    for (const fd of fields) {
      const input = f.elements[fd.name];
      values[fd.name] = fd.type === "checkbox" ? input.checked : input.value.trim();
    }
    button.disabled = true;
    try { await onSubmit(values); } catch (e) { toast(e.message); } finally { button.disabled = false; }
  });
  return f;
}

// A button that asks again before it acts (no modal dialogs: keyboard and tests alike).
function confirmButton(label, confirmLabel, action) {
  const b = el("button", { type: "button", class: "danger", "data-action": label.toLowerCase() }, label);
  let armed = false;
  b.addEventListener("click", async () => {
    if (!armed) { armed = true; b.textContent = confirmLabel; return; }
    b.disabled = true;
    try { await action(); } catch (e) { toast(e.message); b.disabled = false; }
  });
  b.addEventListener("blur", () => { if (armed && !b.disabled) { armed = false; b.textContent = label; } });
  return b;
}

function optional(v) { return v === "" ? undefined : v; }

// ---------- pages ----------

// The pages a session may open (built on first use: the page functions are defined below).
function pages() {
  if (!session.who || session.who.role !== "admin") return [["spend", "My spend", spendPage]];
  return [
    ["overview", "Overview", overviewPage],
    ["spend", "Spend", spendPage],
    ["budgets", "Budgets", budgetsPage],
    ["models", "Models", modelsPage],
    ["keys", "Keys", keysPage],
    ["users", "Users", usersPage],
    ["teams", "Teams", teamsPage],
    ["cache", "Cache", cachePage],
    ["requests", "Requests", requestsPage],
  ];
}

async function overviewPage(main) {
  main.append(el("h1", {}, "Overview"), el("p", { class: "muted" }, "The last 5 minutes, from every replica's request log; refreshed every 5 seconds."));
  const live = el("div", { id: "live" });
  const daily = el("section", { "aria-labelledby": "daily-h" });
  main.append(live, daily);
  const draw = async () => {
    const o = await api("GET", "overview?window=300");
    const t = o.traffic, s = o.spend;
    live.replaceChildren(
      el("div", { class: "cards" },
        card("Requests/s", num(t.requests_per_sec, 2), `${num(t.requests, 0)} requests`, "rps"),
        card("Error rate", pct(t.error_rate), `${num(t.errors, 0)} failed`, "error_rate"),
        card("Latency p50 / p95", `${ms(t.latency_p50_ms)}`, `p95 ${ms(t.latency_p95_ms)}`, "latency"),
        card("TTFT p50 / p95", `${ms(t.ttft_p50_ms)}`, `p95 ${ms(t.ttft_p95_ms)} (streams)`, "ttft"),
        card("Spend today", usd(s.today_usd), null, "spend_today"),
        card("Spend this month", usd(s.month_usd),
          `forecast ${usd(s.month_expected_usd)} (${usd(Number(s.month_usd) + s.month_forecast.low_usd)}–${usd(Number(s.month_usd) + s.month_forecast.high_usd)})`,
          "spend_month")));
  };
  const mine = generation;
  await draw();
  const days = await api("GET", "spend?from=14d&group_by=day");
  daily.append(el("h2", { id: "daily-h" }, "Spend per day (14 days)"),
    days.groups.length
      ? barChart("Spend per day", days.groups.map((g) => ({ label: g.group.slice(0, 10), value: Number(g.cost_usd) })), usd)
      : el("p", { class: "muted" }, "No spend in the last 14 days."));
  if (mine !== generation) return;
  refreshTimer = setInterval(() => {
    if (mine !== generation || !live.isConnected) { clearInterval(refreshTimer); return; }
    draw().catch((e) => toast(e.message));
  }, 5000);
}

async function spendPage(main) {
  const admin = session.who.role === "admin";
  main.append(el("h1", {}, admin ? "Spend" : "My spend"));
  if (!admin) {
    main.append(el("p", { class: "muted" }, session.who.user
      ? `Spend of user ${session.who.user} (every key of the user).`
      : "Spend of this key only."));
  }
  const groupings = admin
    ? [["model", "Model"], ["team", "Team"], ["user", "User"], ["key", "Key"], ["route", "Route"], ["category", "Category"], ["provider", "Provider"], ["day", "Day"]]
    : [["model", "Model"], ["day", "Day"]];
  const params = new URLSearchParams(location.hash.split("?")[1] || "");
  const from = params.get("from") || "30d";
  const by = params.get("group_by") || "model";
  const body = el("div", {});
  main.append(form([
    { name: "from", label: "Period", options: [["24h", "Last 24 hours"], ["7d", "Last 7 days"], ["30d", "Last 30 days"], ["90d", "Last 90 days"]], value: from },
    { name: "group_by", label: "Breakdown by", options: groupings, value: by },
  ], "Show", async (v) => { location.hash = `#/spend?from=${v.from}&group_by=${v.group_by}`; }), body);
  const q = `from=${encodeURIComponent(from)}&group_by=${encodeURIComponent(by)}`;
  const r = await api("GET", "spend?" + q);
  const t = r.totals;
  body.append(
    el("div", { class: "cards" },
      card("Spend", usd(t.cost_usd), `${r.from.slice(0, 10)} → ${r.to.slice(0, 10)}`, "spend_total"),
      card("Requests", num(t.requests, 0), t.unpriced_requests ? `${t.unpriced_requests} on unpriced models` : null, "requests"),
      card("Tokens in / out", `${num(t.prompt_tokens, 0)} / ${num(t.completion_tokens, 0)}`, t.cached_tokens ? `${num(t.cached_tokens, 0)} cached` : null, "tokens"),
      card("Saved by the cache", usd(r.savings.cache.saved_usd), null, "saved_cache"),
      card("Saved by routing", usd(r.savings.routing.saved_usd), null, "saved_routing"),
      card("Saved by local models", usd(r.savings.local.saved_usd), null, "saved_local")),
    el("h2", {}, `By ${by}`),
    r.groups.length
      ? barChart(`Spend by ${by}`, r.groups.map((g) => ({ label: g.group || "(none)", value: Number(g.cost_usd) })), usd)
      : el("p", { class: "muted" }, "No spend in this period."),
    table(`Spend by ${by}`, [
      [by, (g) => g.group || "(none)"],
      ["Requests", (g) => num(g.requests, 0), true],
      ["Tokens in", (g) => num(g.prompt_tokens, 0), true],
      ["Tokens out", (g) => num(g.completion_tokens, 0), true],
      ["Cost", (g) => usd(g.cost_usd), true],
    ], r.groups, "No spend in this period."),
    el("p", {}, el("a", { href: "api/spend?" + q + "&format=csv", download: `llmrr-spend-${by}.csv` }, "Export as CSV")));
  if (admin) {
    const recs = await api("GET", "spend/recommendations");
    body.append(el("h2", {}, "Recommendations"),
      table("Recommendations", [
        ["Recommendation", (x) => x.message],
        ["Saves / month", (x) => usd(x.estimated_monthly_saving_usd), true],
      ], recs.data, "No recommendations: nothing in the last 30 days suggests a cheaper setup."));
  }
}

async function budgetsPage(main) {
  main.append(el("h1", {}, "Budgets"));
  const list = await api("GET", "budgets");
  main.append(table("Budgets", [
    ["Scope", (b) => b.scope],
    ["Period", (b) => b.period],
    ["Spent", (b) => {
      if (!b.limit_usd) return `${usd(b.spent_usd)} · ${num(b.spent_tokens, 0)} tokens`;
      const share = Math.min(1, Number(b.spent_usd) / Number(b.limit_usd));
      return el("span", {}, el("progress", { max: 1, value: share, "aria-label": `${b.scope} ${pct(share)} spent` }),
        ` ${usd(b.spent_usd)} of ${usd(b.limit_usd)} (${pct(share)})`);
    }],
    ["Limit", (b) => [b.limit_usd ? usd(b.limit_usd) : null, b.limit_tokens ? `${num(b.limit_tokens, 0)} tokens` : null].filter(Boolean).join(" · ")],
    ["Action", (b) => b.action],
    ["Alerts at", (b) => (b.alert_percent || []).map((p) => p + "%").join(", ")],
    ["State", (b) => b.exceeded ? el("span", { class: "badge bad" }, "exceeded")
      : b.projected_exhaustion ? el("span", { class: "badge warn" }, "runs out " + when(b.projected_exhaustion))
      : el("span", { class: "badge ok" }, "within")],
    ["Resets", (b) => when(b.resets_at)],
    ["", (b) => el("div", { class: "row-actions" },
      el("button", { type: "button", class: "secondary", onclick: () => editBudget(b) }, "Edit"),
      confirmButton("Delete", "Confirm delete", async () => { await api("DELETE", "budgets/" + encodeURIComponent(b.id)); toast("Budget deleted"); route(); }))],
  ], list.data, "No budgets."));
  main.append(el("h2", { id: "budget-form-h" }, "Set a budget"), budgetForm({}));
}

// A budget is its scope and period: editing one changes its limits, never those two (saving
// another scope or period would make a second budget).
function budgetForm(b) {
  const editing = Boolean(b.id);
  const f = form([
    { name: "scope", label: "Scope (global, team:T, user:U, key:K, model:M)", required: true, value: b.scope || "global" },
    { name: "period", label: "Period", options: [["hour", "Hour"], ["day", "Day"], ["week", "Week"], ["month", "Month"], ["lifetime", "Lifetime"]], value: b.period || "month" },
    { name: "limit_usd", label: "Limit (USD)", type: "number", step: "0.01", min: "0", value: b.limit_usd },
    { name: "limit_tokens", label: "Limit (tokens)", type: "number", step: "1", min: "1", value: b.limit_tokens },
    { name: "action", label: "When reached", options: [["reject", "Reject"], ["downgrade", "Downgrade"], ["alert", "Alert only"]], value: b.action || "reject" },
    { name: "alert_percent", label: "Alert at (%)", value: (b.alert_percent || [50, 80, 90, 100]).join(", ") },
  ], "Save budget", async (v) => {
    await api("POST", "budgets", {
      scope: v.scope, period: v.period, action: v.action,
      limit_usd: optional(v.limit_usd),
      limit_tokens: v.limit_tokens ? Number(v.limit_tokens) : undefined,
      alert_percent: v.alert_percent.split(",").map((p) => Number(p.trim())).filter((p) => p > 0),
      default_max_tokens: b.default_max_tokens === null ? undefined : b.default_max_tokens,
    });
    toast("Budget saved");
    route();
  });
  if (editing) {
    f.elements.scope.readOnly = true;
    f.elements.period.disabled = true;
    f.append(el("button", { type: "button", class: "secondary", onclick: () => f.replaceWith(budgetForm({})) }, "Cancel"));
  }
  return f;
}

function editBudget(b) {
  const old = document.querySelector("main form.inline:last-of-type");
  old.replaceWith(budgetForm(b));
  document.querySelector("main form.inline:last-of-type input[name=limit_usd]").focus();
}

async function modelsPage(main) {
  main.append(el("h1", {}, "Models"), el("p", { class: "muted" }, "Live numbers of this replica: latency and errors over the recent window, breaker and rate-limit state."));
  const m = await api("GET", "models");
  const localState = (x) => {
    if (!x.local) return "remote";
    const s = x.local;
    return [s.state, `${num(s.memory_budgeted_bytes / 1048576, 0)} MiB`, `${s.loads} loads`, s.last_error ? "error: " + s.last_error : null].filter(Boolean).join(" · ");
  };
  main.append(table("Models", [
    ["Model", (x) => x.model],
    ["Provider", (x) => x.provider],
    ["Breaker", (x) => el("span", { class: "badge " + (x.breaker === "closed" ? "ok" : x.breaker === "open" ? "bad" : "warn") }, x.breaker)],
    ["Rate limited", (x) => x.rate_limited_for_secs ? `for ${num(x.rate_limited_for_secs, 0)} s` : "no"],
    ["Latency", (x) => ms(x.stats.latency_ms), true],
    ["TTFT", (x) => ms(x.stats.ttft_ms), true],
    ["Errors", (x) => pct(x.stats.error_rate), true],
    ["Requests", (x) => num(x.stats.requests_in_window, 0), true],
    ["In flight", (x) => num(x.stats.in_flight, 0), true],
    ["Quality", (x) => num(x.quality, 2), true],
    ["Local", localState],
    ["", (x) => x.local ? el("div", { class: "row-actions" },
      el("button", { type: "button", class: "secondary", onclick: () => lifecycle("load", x.model) }, "Load"),
      el("button", { type: "button", class: "secondary", onclick: () => lifecycle("unload", x.model) }, "Unload")) : ""],
  ], m.models, "No models configured."));
  main.append(el("h2", {}, "Routes"), table("Routes", [
    ["Route", (r) => r.route],
    ["Strategy", (r) => r.strategy],
    ["Models", (r) => r.models.join(", ")],
    ["Rollout", (r) => r.rollout ? `${r.rollout.from} → ${r.rollout.to} (${r.rollout.state})` : "–"],
  ], m.routes, "No routes configured."));
}

async function lifecycle(action, model) {
  try {
    await api("POST", "models/" + action, { model });
    toast(`${model}: ${action === "load" ? "loaded" : "unloading once idle"}`);
    route();
  } catch (e) { toast(e.message); }
}

async function keysPage(main) {
  main.append(el("h1", {}, "Keys"));
  const shown = el("div", { id: "new-secret", "aria-live": "polite" });
  const keys = await api("GET", "keys");
  main.append(el("h2", {}, "Create a key"), form([
    { name: "name", label: "Name", required: true },
    { name: "user", label: "User (optional)" },
    { name: "team", label: "Team (optional)" },
    { name: "admin", label: "Admin key", type: "checkbox" },
  ], "Create key", async (v) => {
    const created = await api("POST", "keys", { name: v.name, user: optional(v.user), team: optional(v.team), admin: v.admin });
    await route();
    showSecret(`Key “${created.name}” created. Copy it now: it is not shown again.`, created.key);
  }), shown);
  main.append(el("h2", {}, "Keys"), table("Keys", [
    ["Name", (k) => k.name + (k.admin ? " (admin)" : "")],
    ["Key", (k) => k.key_prefix + "…"],
    ["User", (k) => k.owner_user || "–"],
    ["Team", (k) => k.owner_team || "–"],
    ["Created", (k) => when(k.created_at_ms)],
    ["Last used", (k) => when(k.last_used_at_ms)],
    ["Expires", (k) => k.expires_at_ms ? when(k.expires_at_ms) : "never"],
    ["State", (k) => k.revoked_at_ms ? el("span", { class: "badge bad" }, "revoked") : el("span", { class: "badge ok" }, "active")],
    ["", (k) => k.revoked_at_ms ? "" : el("div", { class: "row-actions", "data-key": k.id },
      confirmButton("Rotate", "Confirm rotate (the old secret stops now)", async () => {
        const r = await api("POST", `keys/${encodeURIComponent(k.id)}/rotate`, { grace_secs: 0 });
        await route();
        showSecret(`Key “${k.name}” rotated. Copy the new secret now.`, r.key);
      }),
      confirmButton("Revoke", "Confirm revoke", async () => { await api("DELETE", "keys/" + encodeURIComponent(k.id)); toast("Key revoked"); route(); }))],
  ], keys.data, "No keys yet."));
}

function showSecret(message, secret) {
  const box = document.getElementById("new-secret");
  if (!box) return;
  box.replaceChildren(el("p", {}, message), el("p", { class: "secret", tabindex: "0" }, secret));
  box.querySelector(".secret").focus();
}

function entityPage(kind, title, fields, columns) {
  return async (main) => {
    main.append(el("h1", {}, title));
    const rows = await api("GET", kind);
    main.append(el("h2", {}, "Add or update"), form(fields, "Save", async (v) => {
      const body = {};
      for (const [k, val] of Object.entries(v)) body[k] = optional(val);
      await api("POST", kind, body);
      toast("Saved");
      route();
    }));
    main.append(el("h2", {}, title), table(title, columns.concat([["", (r) =>
      confirmButton("Delete", "Confirm delete", async () => { await api("DELETE", `${kind}/${encodeURIComponent(r.id)}`); toast("Deleted"); route(); })]]),
    rows.data, `No ${kind} yet.`));
  };
}

const usersPage = entityPage("users", "Users",
  [{ name: "id", label: "Id", required: true }, { name: "name", label: "Name" }, { name: "email", label: "Email", type: "email" }, { name: "team", label: "Team" }],
  [["Id", (u) => u.id], ["Name", (u) => u.name], ["Email", (u) => u.email || "–"], ["Team", (u) => u.team_id || "–"], ["Created", (u) => when(u.created_at_ms)]]);

const teamsPage = entityPage("teams", "Teams",
  [{ name: "id", label: "Id", required: true }, { name: "name", label: "Name" }],
  [["Id", (t) => t.id], ["Name", (t) => t.name], ["Created", (t) => when(t.created_at_ms)]]);

async function cachePage(main) {
  main.append(el("h1", {}, "Cache"));
  const c = await api("GET", "cache");
  if (!c.enabled) {
    main.append(el("p", { class: "muted" }, "The response cache is off: no route or model has `cache` configured."));
    return;
  }
  const p = c.process;
  main.append(el("div", { class: "cards" },
    card("Hit rate (this replica)", pct(p.hit_rate), `${num(p.hits, 0)} hits · ${num(p.misses, 0)} misses · ${num(p.bypasses, 0)} bypassed`, "cache_hit_rate"),
    card("Saved (this replica)", usd(p.saved_usd), null, "cache_saved_here"),
    card("Hits (all replicas, all time)", num(c.ledger.hits, 0), null, "cache_hits"),
    card("Saved (all replicas, all time)", usd(c.ledger.saved_usd), null, "cache_saved")));
  main.append(el("h2", {}, "Tiers (this replica)"), table("Cache tiers", [
    ["Tier", (t) => t.tier],
    ["On", (t) => t.enabled ? "yes" : "no"],
    ["Entries", (t) => num(t.entries, 0), true],
    ["Bytes", (t) => num(t.bytes, 0), true],
    ["Capacity", (t) => num(t.capacity_bytes, 0), true],
    ["Hits", (t) => num(t.hits, 0), true],
    ["Fills", (t) => num(t.fills, 0), true],
    ["Evictions", (t) => num(t.evictions, 0), true],
    ["Errors", (t) => num(t.errors, 0), true],
  ], p.tiers));
  main.append(el("h2", {}, "Purge"), confirmButton("Purge the whole cache", "Confirm purge", async () => {
    const r = await api("DELETE", "cache");
    toast("Purged: " + JSON.stringify(r.purged));
    route();
  }));
}

async function requestsPage(main) {
  main.append(el("h1", {}, "Recent requests"));
  const params = new URLSearchParams(location.hash.split("?")[1] || "");
  main.append(form([
    { name: "model", label: "Model", value: params.get("model") || "" },
    { name: "route", label: "Route", value: params.get("route") || "" },
    { name: "key", label: "Key id", value: params.get("key") || "" },
    { name: "status", label: "Status", options: [["", "Any"], ["ok", "Answered"], ["error", "Failed"]], value: params.get("status") || "" },
  ], "Filter", async (v) => {
    const q = new URLSearchParams(Object.entries(v).filter(([, x]) => x));
    location.hash = "#/requests?" + q.toString();
  }));
  const list = el("div", {});
  main.append(list);
  const q = new URLSearchParams();
  for (const k of ["model", "route", "key", "status"]) if (params.get(k)) q.set(k, params.get(k));
  q.set("limit", "50");
  const r = await api("GET", "requests?" + q.toString());
  list.append(table("Recent requests", [
    ["Time", (x) => when(x.created_at_ms)],
    ["Status", (x) => el("span", { class: "badge " + (x.status < 400 ? "ok" : "bad") }, String(x.status)) ],
    ["Asked", (x) => x.requested_model],
    ["Model", (x) => x.model || "–"],
    ["Tokens", (x) => `${x.prompt_tokens} / ${x.completion_tokens}`, true],
    ["Latency", (x) => ms(x.latency_us / 1000), true],
    ["Cost", (x) => usd(x.cost_usd), true],
    ["Cache", (x) => x.cache || "–"],
    ["Why", (x) => el("details", {}, el("summary", {}, x.route ? `route ${x.route}` : "explain"),
      el("p", {}, x.reason || "Named a model directly: no routing decision."),
      x.error_type ? el("p", { class: "error" }, "Error: " + x.error_type) : null,
      x.category ? el("p", {}, `Prompt: ${x.category}, difficulty ${num(x.difficulty / 10000, 2)}`) : null,
      el("p", { class: "muted" }, `Request ${x.id} · key ${x.key_id || "–"} · ${x.endpoint}${x.stream ? " · stream" : ""}`))],
  ], r.data, "No requests match."));
}

// ---------- shell ----------

function showLogin(message) {
  generation += 1;
  clearInterval(refreshTimer);
  session.who = null;
  document.getElementById("nav").replaceChildren();
  document.getElementById("nav").hidden = true;
  document.getElementById("signout").hidden = true;
  document.getElementById("whoami").textContent = "";
  const main = document.getElementById("main");
  const error = el("p", { class: "error", role: "alert", id: "login-error" }, message && message !== "not signed in, or the session has ended: sign in again" ? message : "");
  const f = el("form", { id: "login" },
    el("label", {}, "API key", el("input", { type: "password", name: "key", id: "key", required: true, autocomplete: "current-password" })),
    el("button", { type: "submit" }, "Sign in"));
  f.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.textContent = "";
    const button = f.querySelector("button");
    button.disabled = true;
    let resp, data;
    try {
      resp = await fetch("login", {
        method: "POST", credentials: "same-origin",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ key: f.elements.key.value }),
      });
      data = await resp.json().catch(() => null);
    } catch (e) {
      error.textContent = "llmrr did not answer: " + e.message;
      return;
    } finally {
      button.disabled = false;
    }
    if (!resp.ok) {
      error.textContent = (data && data.error && data.error.message) || "Sign-in failed";
      return;
    }
    session.csrf = data.csrf_token;
    session.who = data.who;
    f.elements.key.value = "";
    signedIn();
  });
  main.replaceChildren(el("section", { class: "login" },
    el("h1", {}, "Sign in"),
    el("p", { class: "muted" }, "With the master key, an admin key (the whole dashboard), or any virtual key (its own spend)."),
    f, error));
  f.elements.key.focus();
}

function signedIn() {
  const nav = document.getElementById("nav");
  nav.replaceChildren(...pages().map(([id, label]) => el("a", { href: "#/" + id, "data-page": id }, label)));
  nav.hidden = false;
  document.getElementById("signout").hidden = false;
  document.getElementById("whoami").textContent = `${session.who.name || "key"} · ${session.who.role}`;
  if (!pages().some(([id]) => location.hash.startsWith("#/" + id))) location.hash = "#/" + pages()[0][0];
  else route().then(() => document.getElementById("main").focus());
}

async function route() {
  generation += 1;
  clearInterval(refreshTimer);
  if (!session.who) return;
  const id = location.hash.startsWith("#/") ? location.hash.slice(2).split("?")[0] : pages()[0][0];
  const page = pages().find(([p]) => p === id) || pages()[0];
  for (const a of document.querySelectorAll("#nav a")) {
    if (a.dataset.page === page[0]) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  document.title = `${page[1]} · llmrr`;
  const main = document.getElementById("main");
  const fresh = el("div", { "data-page": page[0], "aria-busy": "true" });
  main.replaceChildren(fresh);
  try {
    await page[2](fresh);
  } catch (e) {
    if (e.status !== 401) fresh.append(el("p", { class: "error", role: "alert" }, "Could not load this page: " + e.message));
  }
  fresh.setAttribute("aria-busy", "false");
  fresh.dataset.ready = "true";
}

async function start() {
  window.addEventListener("hashchange", () => {
    // Only "#/page" is a route; "#main" (the skip link) just moves focus.
    if (!location.hash.startsWith("#/")) return;
    route().then(() => document.getElementById("main").focus());
  });
  document.getElementById("signout").addEventListener("click", async () => {
    try { await api("POST", "logout"); } catch { /* signed out anyway */ }
    showLogin("");
  });
  try {
    const s = await api("GET", "session");
    session.csrf = s.csrf_token;
    session.who = s.who;
    signedIn();
  } catch (e) {
    if (e.status !== 401) showLogin(e.message);
  }
}

document.addEventListener("DOMContentLoaded", start);
