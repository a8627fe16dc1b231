// seata-tc console: reads /admin/v1 and renders it. Every value from the server goes into the
// page as text (never as HTML). The admin token is asked for on the first action and kept in
// this tab's sessionStorage.
"use strict";

const API = "/admin/v1";
const PAGE = 50;
const state = { tab: "transactions", offset: 0, total: 0, selected: null, actionsEnabled: false };

function $(sel) { return document.querySelector(sel); }

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const kid of kids.flat()) {
    if (kid === null || kid === undefined || kid === false) continue;
    e.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return e;
}

function statusClass(s) {
  s = String(s || "");
  if (/Failed|Unretryable|^failed$/.test(s)) return "bad";
  if (/Retrying|Retryable|^aborting$/.test(s)) return "warn";
  if (/^(Committed|Rollbacked|TimeoutRollbacked|Finished|PhaseTwo_Committed|PhaseTwo_Rollbacked|PhaseOne_Done|succeed)$/.test(s)) return "ok";
  if (/Rollback|Timeout/.test(s)) return "roll";
  if (/^(Begin|Committing|AsyncCommitting|submitted|Registered)$/.test(s)) return "run";
  return "idle";
}

function chip(status) { return el("span", { class: "st " + statusClass(status), text: status }); }

function age(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 120) return s + "s";
  if (s < 7200) return Math.floor(s / 60) + "m";
  if (s < 172800) return Math.floor(s / 3600) + "h";
  return Math.floor(s / 86400) + "d";
}

function time(ms) {
  if (!ms) return "";
  const d = new Date(ms);
  const p = (n, w = 2) => String(n).padStart(w, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

async function api(path, opts) {
  const r = await fetch(API + path, opts);
  let body = null;
  try { body = await r.json(); } catch (_) { body = null; }
  if (!r.ok) {
    const err = new Error((body && body.error) || ("HTTP " + r.status));
    err.status = r.status;
    err.body = body || {};
    throw err;
  }
  return body;
}

function notice(text, kind) {
  const n = $("#notice");
  n.textContent = text;
  n.className = "notice " + (kind || "");
  if (kind === "ok") setTimeout(() => { if (n.textContent === text) n.classList.add("hidden"); }, 6000);
}

// ---- overview --------------------------------------------------------------------------

function card(label, n, cls, onclick) {
  return el("div", { class: "card " + (cls || "") + (onclick ? " click" : ""), onclick },
    el("div", { class: "n", text: n }), el("div", { class: "l", text: label }));
}

async function loadOverview() {
  const o = await api("/overview");
  state.actionsEnabled = !!o.actions_enabled;
  const byStatus = o.by_status || {};
  const count = (pred) => Object.entries(byStatus).filter(([k]) => pred(k)).reduce((a, [, v]) => a + v, 0);
  const failed = count((k) => /Failed$/.test(k));
  $("#overview").replaceChildren(
    card("Seata transactions", o.seata_sessions, "", () => setFilter({ kind: "seata" })),
    card("in phase one", count((k) => k === "seata:Begin"), "", () => setFilter({ kind: "seata", status: "Begin" })),
    card("retrying", o.retrying, o.retrying ? "warn" : "", () => setFilter({ stuck_s: "0" })),
    card("need an operator", o.needs_operator, o.needs_operator ? "bad" : "", () => setFilter({ status: "RollbackFailed,TimeoutRollbackFailed,CommitFailed" })),
    card("failed, kept", failed, failed ? "bad" : ""),
    card("DTM open", o.dtm_open, "", () => setFilter({ kind: "dtm", status: "prepared,submitted,aborting" })),
    card("DTM kept", o.dtm_transactions, "", () => setFilter({ kind: "dtm" })),
    card("row locks", o.row_locks, "", () => switchTab("locks")),
    card("TMs / RMs", `${o.clients_tm} / ${o.clients_rm}`, "", () => switchTab("clients")),
  );
  $("#token-btn").textContent = sessionStorage.getItem("seata-admin-token") ? "Token set ✓" : "Set token";
  if (!state.actionsEnabled) {
    notice("Actions are disabled on this TC: set [admin] token (or token-file) in its config and restart it. Reading works.", "");
  }
}

// ---- transactions ----------------------------------------------------------------------

function filterQuery() {
  const f = new FormData($("#filters"));
  const q = new URLSearchParams();
  for (const [k, v] of f.entries()) if (String(v).trim() !== "") q.set(k, String(v).trim());
  q.set("offset", state.offset);
  q.set("limit", PAGE);
  return q.toString();
}

function setFilter(values) {
  const form = $("#filters");
  form.reset();
  for (const [k, v] of Object.entries(values)) form.elements[k].value = v;
  state.offset = 0;
  switchTab("transactions");
  loadTx();
}

async function loadTx() {
  const list = await api("/transactions?" + filterQuery());
  state.total = list.total;
  const rows = list.items.map((t) => {
    const tr = el("tr", { class: t.id === state.selected ? "sel" : "", "data-id": t.id, onclick: () => showDetail(t.id) },
      el("td", {}, chip(t.status), t.needs_operator ? el("span", { class: "flag", title: "waits for an operator", text: "!" }) : null),
      el("td", { class: "id", text: t.id }),
      el("td", { class: "nw", text: t.mode }),
      el("td", { text: t.application }),
      el("td", { text: t.name }),
      el("td", { class: "r", text: age(t.age_ms), title: time(t.begin_time_ms) }),
      el("td", { class: "r", text: t.kind === "dtm" && !t.branches ? "" : t.branches }),
      el("td", { class: "r", text: t.failed_attempts || "" }),
      el("td", { class: "err", text: t.last_error || "", title: t.last_error || "" }),
    );
    return tr;
  });
  $("#tx-table tbody").replaceChildren(...rows);
  $("#tx-empty").classList.toggle("hidden", rows.length > 0);
  const from = list.total ? list.offset + 1 : 0;
  $("#page-info").textContent = `${from}–${list.offset + rows.length} of ${list.total}`;
  $("#prev").disabled = state.offset === 0;
  $("#next").disabled = state.offset + PAGE >= list.total;
}

function timelineItems(d) {
  const items = [];
  const s = d.summary;
  items.push({ at: s.begin_time_ms, cls: "", text: `began (${d.kind === "dtm" ? s.mode : "timeout " + (d.transaction.timeout_ms / 1000) + " s"})` });
  if (d.kind === "dtm") {
    for (const b of d.transaction.branches || []) {
      items.push({ at: b.create_time_ms, cls: "", text: `branch ${b.branch_id} ${b.op} registered` });
      if (b.finish_time_ms) items.push({ at: b.finish_time_ms, cls: statusClass(b.status), text: `branch ${b.branch_id} ${b.op}: ${b.status}` });
    }
    if (d.transaction.finish_time_ms) items.push({ at: d.transaction.finish_time_ms, cls: statusClass(s.status), text: `finished ${s.status}` });
  }
  for (const h of d.history || []) {
    items.push({ at: h.at_ms, cls: /^operator /.test(h.what) ? "op" : "bad", text: (h.branch_id ? `branch ${h.branch_id}: ` : "") + h.what });
  }
  for (const a of d.audit || []) {
    items.push({ at: a.at_ms, cls: a.actor === "rm" ? "bad" : "op", text: `audit: ${a.actor} ${a.action}${a.branch_id ? " branch " + a.branch_id : ""}${a.reason && a.actor !== "rm" ? " — " + a.reason : ""}` });
  }
  items.sort((a, b) => a.at - b.at);
  return items;
}

function actionButton(label, cls, run, enabled) {
  return el("button", { class: cls, onclick: run, disabled: !enabled, title: enabled ? "" : "actions are disabled on this TC" }, label);
}

async function showDetail(id) {
  state.selected = id;
  for (const tr of document.querySelectorAll("#tx-table tbody tr")) tr.classList.toggle("sel", tr.dataset.id === id);
  let d;
  try {
    d = await api("/transactions/" + encodeURIComponent(id));
  } catch (e) {
    if (e.status === 404) {
      // Finished (or deleted) since it was listed: close the panel; the list no longer has it.
      state.selected = null;
      $("#detail").classList.add("hidden");
      return;
    }
    $("#detail").replaceChildren(el("p", { class: "muted", text: e.message }));
    $("#detail").classList.remove("hidden");
    return;
  }
  const s = d.summary;
  const t = d.transaction;
  const seata = d.kind === "seata";
  const on = state.actionsEnabled;
  const act = (action, title, text, reason) => () => runAction(`/transactions/${encodeURIComponent(id)}/${action}`, title, text, reason);
  const phaseOne = s.status === "Begin";
  const rollbackSide = /Rollback|Timeout/.test(s.status);
  const commitSide = /Commit/.test(s.status) && !rollbackSide;
  const kept = /Failed$/.test(s.status);
  const buttons = seata ? [
    actionButton("Retry now", "", act("retry", "Retry phase two now", kept ? "The rollback is resumed: the branch the RM refused is tried again. Fix its data first." : "Phase two of this transaction runs again now."), on && !phaseOne),
    actionButton("Roll back", "warn", act("rollback", "Roll back", phaseOne ? "Decide a rollback now: every branch is rolled back. Its TM will get 'rolled back' when it commits." : "Push the decided rollback on now."), on && !commitSide),
    actionButton("Commit", "", act("commit", "Push the commit", "Run the decided commit again now."), on && commitSide),
    actionButton("Delete", "danger", act("delete", "Delete the kept record", "The transaction is forgotten and its remaining row locks are released. Its data is left as it is.", true), on && kept),
  ] : [
    actionButton("Retry now", "", act("retry", "Run now", "DTM looks at this transaction now instead of at its next retry time."), on && !/succeed|failed/.test(s.status)),
  ];
  const branchNodes = seata
    ? t.branches.map((b, i) => el("div", { class: "branch " + statusClass(b.unretryable ? "Unretryable" : b.status) },
        el("div", { class: "top" },
          el("span", { class: "ord", text: "#" + (i + 1) }),
          el("b", { class: "mono", text: b.branch_id }),
          el("span", { text: b.branch_type }),
          chip(b.status),
          b.unretryable ? el("span", { class: "st bad", text: "waits for an operator" }) : null,
          b.failed_attempts ? el("span", { class: "muted", text: `${b.failed_attempts} failed attempt${b.failed_attempts > 1 ? "s" : ""}` }) : null,
          actionButton("Give up", "danger go", () => runAction(
            `/transactions/${encodeURIComponent(id)}/branches/${b.branch_id}/give-up`,
            `Give up branch ${b.branch_id}`,
            "The branch is forgotten without finishing its phase two and its row locks are released; the transaction ends as failed. Say why (kept in the audit record).", true),
            on && !phaseOne)),
        el("div", { class: "res" }, el("span", { text: b.resource_id }), " · RM ", el("span", { class: "mono", text: b.client_id })),
        b.lock_key ? el("div", { class: "res" }, "locks ", el("span", { class: "mono", text: b.lock_key })) : null,
        b.last_error ? el("pre", { text: b.last_error }) : null))
    : (t.branches || []).map((b) => el("div", { class: "branch " + statusClass(b.status) },
        el("div", { class: "top" }, el("b", { class: "mono", text: b.branch_id }), el("span", { text: b.op }), chip(b.status)),
        el("div", { class: "res", text: b.url })));
  const order = seata && t.branches.length > 1
    ? el("div", { class: "order-note", text: rollbackSide ? "Registration order; rollback runs from the last branch back to the first." : "Registration order; commit runs first to last." })
    : null;
  $("#detail").replaceChildren(...[
    el("button", { class: "ghost close", onclick: () => { state.selected = null; $("#detail").classList.add("hidden"); loadTx(); } }, "✕"),
    el("h2", { text: s.id }),
    el("div", {}, chip(s.status), " ", el("span", { class: "muted", text: `${s.mode} · ${s.kind}` })),
    el("dl", { class: "kv" },
      seata ? [el("dt", { text: "Application" }), el("dd", { text: `${t.application_id} (${t.transaction_service_group})` })] : null,
      seata ? [el("dt", { text: "Name" }), el("dd", { text: t.transaction_name })] : null,
      el("dt", { text: "Began" }), el("dd", { text: `${time(s.begin_time_ms)} (${age(s.age_ms)} ago)` }),
      s.retrying_since_ms ? [el("dt", { text: "Failing since" }), el("dd", { text: time(s.retrying_since_ms) })] : null,
      !seata && t.rollback_reason ? [el("dt", { text: "Reason" }), el("dd", { text: t.rollback_reason })] : null,
      !seata ? [el("dt", { text: "Next try" }), el("dd", { text: time(t.next_cron_time_ms) })] : null),
    el("div", { class: "actions" }, buttons),
    el("h3", { text: `Branches (${branchNodes.length})` }),
    order,
    el("div", { class: "branches" }, branchNodes.length ? branchNodes : el("p", { class: "muted", text: "No branch registered." })),
    el("h3", { text: "Timeline" }),
    el("ul", { class: "timeline" }, timelineItems(d).map((it) =>
      el("li", { class: it.cls }, el("span", { class: "t", text: time(it.at) }), el("span", { text: it.text })))),
  ].filter((n) => n));
  $("#detail").classList.remove("hidden");
}

// ---- actions ---------------------------------------------------------------------------

function askToken() {
  return new Promise((resolve) => {
    const dlg = $("#token-dialog");
    $("#token-input").value = sessionStorage.getItem("seata-admin-token") || "";
    dlg.onclose = () => {
      if (dlg.returnValue === "ok" && $("#token-input").value.trim()) {
        sessionStorage.setItem("seata-admin-token", $("#token-input").value.trim());
        $("#token-btn").textContent = "Token set ✓";
        resolve(true);
      } else resolve(false);
    };
    dlg.showModal();
  });
}

function confirmAction(title, text, needReason) {
  return new Promise((resolve) => {
    const dlg = $("#confirm-dialog");
    $("#confirm-title").textContent = title;
    $("#confirm-text").textContent = text;
    $("#reason-label").classList.toggle("hidden", !needReason);
    $("#reason-input").value = "";
    dlg.onclose = () => resolve(dlg.returnValue === "ok" ? { reason: $("#reason-input").value.trim() } : null);
    dlg.showModal();
  });
}

async function runAction(path, title, text, needReason) {
  if (!sessionStorage.getItem("seata-admin-token") && !(await askToken())) return;
  const answer = await confirmAction(title, text, needReason);
  if (!answer) return;
  if (needReason && !answer.reason && /give-up/.test(path)) { notice("A give-up needs a reason.", "bad"); return; }
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const r = await api(path, {
        method: "POST",
        headers: { "Content-Type": "application/json", "Authorization": "Bearer " + sessionStorage.getItem("seata-admin-token") },
        body: JSON.stringify({ reason: answer.reason || "", actor: "console" }),
      });
      notice(`${r.action} ${r.xid}: ${r.status}${r.changed ? "" : " (no change)"} — ${r.message}`, "ok");
      break;
    } catch (e) {
      if (e.status === 401 && attempt === 0) {
        sessionStorage.removeItem("seata-admin-token");
        if (await askToken()) continue;
      }
      notice(e.message + (e.body && e.body.next ? " — " + e.body.next : ""), "bad");
      break;
    }
  }
  await refresh();
}

// ---- locks, clients, audit -------------------------------------------------------------

async function loadLocks() {
  const q = new URLSearchParams();
  for (const [k, v] of new FormData($("#lock-filters")).entries()) if (String(v).trim()) q.set(k, String(v).trim());
  const l = await api("/locks?" + q.toString());
  $("#lock-table tbody").replaceChildren(...l.items.map((r) => el("tr", {},
    el("td", { text: r.resource_id }), el("td", { text: r.table }), el("td", { class: "id", text: r.pk }),
    el("td", { class: "id" }, el("a", { href: "#", onclick: (ev) => { ev.preventDefault(); switchTab("transactions"); showDetail(r.xid); }, text: r.xid })),
    el("td", { class: "r", text: r.branch_id }))));
  $("#lock-empty").classList.toggle("hidden", l.items.length > 0);
  const res = Object.keys(l.by_resource).length, txs = Object.keys(l.by_transaction).length;
  $("#lock-summary").textContent = `${l.total} rows · ${res} resource${res === 1 ? "" : "s"} · ${txs} transaction${txs === 1 ? "" : "s"}`;
}

async function loadClients() {
  const c = await api("/clients");
  $("#client-table tbody").replaceChildren(...c.items.map((r) => el("tr", {},
    el("td", { text: r.application_id }), el("td", { class: "id", text: r.ip }), el("td", { class: "r", text: r.port }),
    el("td", {}, el("span", { class: "st " + (r.role === "RM" ? "roll" : "run"), text: r.role })),
    el("td", { text: r.transaction_service_group }), el("td", { text: r.version }), el("td", { class: "r", text: r.in_flight }),
    el("td", { class: "id", text: r.resources.join(", ") }))));
  $("#client-empty").classList.toggle("hidden", c.items.length > 0);
}

async function loadAudit() {
  const a = await api("/audit?limit=200");
  $("#audit-table tbody").replaceChildren(...a.items.slice().reverse().map((r) => el("tr", {},
    el("td", { class: "nw", text: time(r.at_ms) }), el("td", { class: "nw", text: r.actor }), el("td", { class: "nw", text: r.action }),
    el("td", { class: "id", text: r.xid }), el("td", { class: "r", text: r.branch_id || "" }),
    el("td", {}, chip(r.status)), el("td", { class: "mono", text: r.reason }))));
  $("#audit-empty").classList.toggle("hidden", a.items.length > 0);
}

// ---- wiring ----------------------------------------------------------------------------

function switchTab(tab) {
  state.tab = tab;
  for (const b of document.querySelectorAll("#tabs button")) b.classList.toggle("on", b.dataset.tab === tab);
  for (const s of document.querySelectorAll(".tab")) s.classList.toggle("hidden", s.id !== "tab-" + tab);
  refresh();
}

async function refresh() {
  try {
    await loadOverview();
    if (state.tab === "transactions") {
      await loadTx();
      if (state.selected) await showDetail(state.selected);
    } else if (state.tab === "locks") await loadLocks();
    else if (state.tab === "clients") await loadClients();
    else await loadAudit();
    $("#updated").textContent = "updated " + new Date().toLocaleTimeString();
    document.body.dataset.loaded = "1";
  } catch (e) {
    notice("Cannot read the admin API: " + e.message + (e.body && e.body.next ? " — " + e.body.next : ""), "bad");
  }
}

document.addEventListener("DOMContentLoaded", () => {
  for (const b of document.querySelectorAll("#tabs button")) b.addEventListener("click", () => switchTab(b.dataset.tab));
  $("#filters").addEventListener("submit", (e) => { e.preventDefault(); state.offset = 0; loadTx(); });
  $("#filters").addEventListener("reset", () => setTimeout(() => { state.offset = 0; loadTx(); }));
  $("#lock-filters").addEventListener("submit", (e) => { e.preventDefault(); loadLocks(); });
  $("#prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - PAGE); loadTx(); });
  $("#next").addEventListener("click", () => { state.offset += PAGE; loadTx(); });
  $("#token-btn").addEventListener("click", askToken);
  // Deep links: /console#xid=... opens that transaction, #tab=locks|clients|audit a tab.
  const m = /xid=([^&]+)/.exec(location.hash);
  if (m) state.selected = decodeURIComponent(m[1]);
  const t = /tab=(\w+)/.exec(location.hash);
  if (t && document.getElementById("tab-" + t[1])) switchTab(t[1]);
  else refresh();
  setInterval(() => { if ($("#auto").checked && !document.querySelector("dialog[open]")) refresh(); }, 3000);
});
