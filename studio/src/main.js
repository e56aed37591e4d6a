// The kaq studio: edit one ruleset as a form and as YAML, try an account, see the impact on
// the shipped corpus, save through the server's gate. Everything the page shows comes from
// the studio API (api.md § Studio); nothing is decided here.
import { EditorView, basicSetup } from "codemirror";
import { yaml } from "@codemirror/lang-yaml";
import { setDiagnostics, lintGutter } from "@codemirror/lint";
import { TEXT } from "./i18n.js";

const RULESET = new URLSearchParams(location.search).get("ruleset") || "key-account";
const CHECK_DELAY = 150; // ms of quiet typing before a check
const IMPACT_DELAY = 400; // ms after a clean check before the impact is asked for
const TRY_DELAY = 200;

const $ = (sel) => document.querySelector(sel);
const state = {
  lang: localStorage.getItem("kaq-studio-lang") || "zh",
  token: sessionStorage.getItem("kaq-studio-token") || "",
  servedSource: "",
  servedTests: null,
  baseDigest: "",
  version: 0, // bumped at every change of the YAML text
  form: { params: [], messages: [] },
  spans: new Map(), // key -> {from, to}: where each form value sits in the text now
  samples: [],
  editedVerdict: null,
  servedVerdict: null,
  lastDiagnostics: [],
  lastImpact: null,
  testsEdited: false,
  applying: false,
};
const timers = {};
const inflight = {};
// Measured in the page, read by the browser test: ms from a text change to its result.
window.kaqStudio = { timings: { diagnostics: [], impact: [] }, state };
const changedAt = new Map(); // version -> performance.now() of the change

function t(key, ...args) {
  const value = TEXT[state.lang][key] ?? TEXT.en[key] ?? key;
  return typeof value === "function" ? value(...args) : value;
}
function both(text) {
  if (!text) return "";
  return typeof text === "string" ? text : text[state.lang] || text.en || "";
}
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}
function debounce(name, ms, fn) {
  clearTimeout(timers[name]);
  timers[name] = setTimeout(fn, ms);
}

// ------------------------------------------------------------------ the API

class ApiError extends Error {
  constructor(status, body) {
    super(body?.detail || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

async function api(method, path, body, signal) {
  const res = await fetch(path, {
    method,
    signal,
    headers: {
      authorization: `Bearer ${state.token}`,
      ...(body !== undefined ? { "content-type": "application/json" } : {}),
    },
    body: body !== undefined ? JSON.stringify(body) : undefined,
  });
  const data = await res.json().catch(() => null);
  if (res.status === 401 || res.status === 403) {
    askToken(res.status === 403 ? t("studioDisabled") : t("tokenWrong"));
  }
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}

// One request of a kind at a time: a newer one aborts the older (typing outruns the server).
async function latest(kind, method, path, body) {
  inflight[kind]?.abort();
  const ctl = new AbortController();
  inflight[kind] = ctl;
  try {
    return await api(method, path, body, ctl.signal);
  } finally {
    if (inflight[kind] === ctl) delete inflight[kind];
  }
}
const aborted = (e) => e?.name === "AbortError";

// ------------------------------------------------------------------ editors

const editor = new EditorView({
  parent: $("#editor"),
  doc: "",
  extensions: [
    basicSetup,
    yaml(),
    lintGutter(),
    EditorView.updateListener.of((u) => {
      if (!u.docChanged) return;
      state.version += 1;
      changedAt.set(state.version, performance.now());
      for (const [key, span] of state.spans) {
        state.spans.set(key, {
          from: u.changes.mapPos(span.from, -1),
          to: u.changes.mapPos(span.to, 1),
        });
      }
      if (!state.applying) syncFormFromText();
      // what is shown is of an older text until the answers for this one arrive
      $("#impact-panel").classList.add("stale");
      $("#try-table").classList.add("stale");
      debounce("check", CHECK_DELAY, check);
    }),
  ],
});
const testsEditor = new EditorView({
  parent: $("#tests-editor"),
  doc: "",
  extensions: [
    basicSetup,
    yaml(),
    EditorView.updateListener.of((u) => {
      if (u.docChanged && !state.applying) state.testsEdited = true;
    }),
  ],
});
window.kaqStudio.editor = editor;
window.kaqStudio.testsEditor = testsEditor;

const text = () => editor.state.doc.toString();

// The whole text replaced: the form's spans are unknown until the next check answers.
function setText(view, value) {
  state.applying = true;
  try {
    view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: value } });
    if (view === editor) {
      state.spans.clear();
      for (const input of document.querySelectorAll("[data-span]")) input.disabled = true;
    }
  } finally {
    state.applying = false;
  }
}

// A server position (1-based line, column in code points) as an offset in `doc`.
function offset(doc, line, col) {
  const l = doc.line(Math.min(Math.max(line, 1), doc.lines));
  const chars = Array.from(l.text).slice(0, Math.max(col - 1, 0));
  return l.from + Math.min(chars.join("").length, l.length);
}

// ------------------------------------------------------------------ check and diagnostics

async function check() {
  const version = state.version;
  const doc = editor.state.doc;
  const source = doc.toString();
  let result;
  try {
    result = await latest("check", "POST", "/v1/studio/check", {
      name: RULESET,
      source,
      form: true,
    });
  } catch (e) {
    if (!aborted(e)) showDiagnostics(version, [problemAsDiagnostic(e)]);
    return;
  }
  if (version !== state.version) return; // typed meanwhile: the next check will answer
  showDiagnostics(version, result.diagnostics);
  takeForm(doc, result.form);
  if (result.ok) {
    debounce("try", TRY_DELAY, () => tryAccount(version));
    debounce("impact", IMPACT_DELAY, () => impact(version));
  } else {
    $("#impact-summary").textContent = t("impactWaits");
    $("#impact-summary").dataset.version = String(version);
  }
}

function problemAsDiagnostic(e) {
  return { line: 1, col: 1, code: "studio.unreachable", severity: "error",
    message: e?.body?.detail || String(e), hint: null };
}

function showDiagnostics(version, diagnostics) {
  state.lastDiagnostics = diagnostics;
  const doc = editor.state.doc;
  editor.dispatch(
    setDiagnostics(
      editor.state,
      diagnostics.map((d) => {
        const from = offset(doc, d.line, d.col);
        const line = doc.lineAt(from);
        return {
          from,
          to: Math.max(line.to, from),
          severity: d.severity === "warning" ? "warning" : "error",
          message: `${d.code}: ${d.message}${d.hint ? ` (${d.hint})` : ""}`,
        };
      }),
    ),
  );
  const errors = diagnostics.filter((d) => d.severity === "error").length;
  const status = $("#diag-status");
  status.textContent = errors ? t("problems", errors) : t("noProblems", diagnostics.length);
  status.className = errors ? "dirty" : "clean";
  status.dataset.errors = String(errors);
  const list = $("#diag-list");
  list.replaceChildren(
    ...diagnostics.map((d) =>
      el(
        "li",
        { class: `diag ${d.severity}`, "data-line": d.line, "data-code": d.code },
        el("a", {
          href: "#",
          text: `${RULESET}.yaml:${d.line}:${d.col}: ${d.code}: ${d.message}`,
          onclick: (ev) => {
            ev.preventDefault();
            const pos = offset(editor.state.doc, d.line, d.col);
            editor.dispatch({ selection: { anchor: pos }, scrollIntoView: true });
            editor.focus();
          },
        }),
        d.hint ? el("span", { class: "hint", text: ` (${d.hint})` }) : null,
      ),
    ),
  );
  status.dataset.version = String(version);
  record("diagnostics", version);
}

function record(kind, version) {
  const at = changedAt.get(version);
  if (at !== undefined) window.kaqStudio.timings[kind].push(performance.now() - at);
}

// ------------------------------------------------------------------ the form

function spanOffsets(doc, span) {
  if (!span) return null;
  return { from: offset(doc, span.line, span.col), to: offset(doc, span.line, span.end_col) };
}

function takeForm(doc, form) {
  if (!form) return;
  // A text that does not parse has no form: keep the last one, its spans still mapped.
  if (!form.params.length && !form.messages.length) return;
  state.form = form;
  state.spans.clear();
  for (const p of form.params) {
    const s = spanOffsets(doc, p.span);
    if (s) state.spans.set(`param:${p.name}`, s);
  }
  for (const m of form.messages) {
    for (const lang of ["en", "zh"]) {
      const s = spanOffsets(doc, m[lang].span);
      if (s) state.spans.set(`msg:${m.rule}:${m.key}:${lang}`, s);
    }
  }
  renderForm();
}

// Values shown in the form follow the text (an edit in the YAML shows in the form).
function syncFormFromText() {
  const doc = editor.state.doc;
  for (const input of document.querySelectorAll("[data-span]")) {
    if (input === document.activeElement) continue;
    const span = state.spans.get(input.dataset.span);
    if (!span) continue;
    const raw = doc.sliceString(span.from, span.to);
    input.value = input.dataset.kind === "text" ? unquote(raw) : raw;
  }
}

function unquote(raw) {
  if (raw.startsWith('"')) {
    try { return JSON.parse(raw); } catch { return raw; }
  }
  if (raw.startsWith("'")) return raw.slice(1, -1).replaceAll("''", "'");
  return raw;
}

function writeSpan(key, value) {
  const span = state.spans.get(key);
  if (!span) return;
  state.applying = true;
  try {
    editor.dispatch({ changes: { from: span.from, to: span.to, insert: value } });
  } finally {
    state.applying = false;
  }
  // the edited value now spans exactly what was written
  state.spans.set(key, { from: span.from, to: span.from + value.length });
}

const NUMBER = /^-?\d+(\.\d+)?$/;

function inRange(p, raw) {
  if (!p.range || !NUMBER.test(raw)) return true;
  const v = Number(raw);
  if (p.range.min !== null && v < p.range.min) return false;
  if (p.range.max !== null && v > p.range.max) return false;
  if (p.range.integer && !Number.isInteger(v)) return false;
  return true;
}

function rangeText(p) {
  if (!p.range) return "";
  const { min, max, integer } = p.range;
  const kind = integer ? t("integer") : "";
  if (max === null) return `≥ ${min}${kind ? ` (${kind})` : ""}`;
  return `${min} – ${max}${kind ? ` (${kind})` : ""}`;
}

function renderForm() {
  const doc = editor.state.doc;
  const body = $("#params-table tbody");
  body.replaceChildren(
    ...state.form.params.map((p) => {
      const key = `param:${p.name}`;
      const span = state.spans.get(key);
      const raw = span ? doc.sliceString(span.from, span.to) : JSON.stringify(p.value);
      const input = el("input", {
        type: "text",
        inputmode: "decimal",
        "data-param-input": p.name,
        "data-span": span ? key : null,
        disabled: !span,
        "aria-label": p.name,
      });
      input.value = raw;
      input.classList.toggle("out-of-range", !inRange(p, raw));
      input.addEventListener("input", () => {
        const value = input.value.trim();
        input.classList.toggle("out-of-range", !inRange(p, value));
        writeSpan(key, NUMBER.test(value) ? value : JSON.stringify(value));
      });
      return el(
        "tr",
        { "data-param": p.name },
        el("td", {}, el("div", { class: "param-label", text: both(p.label) || p.name }),
          el("div", { class: "param-name", text: p.name })),
        el("td", {}, input),
        el("td", { text: p.unit ? t(`unit_${p.unit}`) : "" }),
        el("td", { text: rangeText(p) }),
      );
    }),
  );
  const list = $("#messages-list");
  const focused = document.activeElement?.dataset?.span;
  list.replaceChildren(
    ...state.form.messages.map((m) => {
      const box = el(
        "div",
        { class: "message", "data-message": `${m.rule}:${m.key}` },
        el("div", { class: "rule", text: `${m.rule} · ${outcomeLabel(m)}` }),
      );
      for (const lang of ["zh", "en"]) {
        const key = `msg:${m.rule}:${m.key}:${lang}`;
        const span = state.spans.get(key);
        const area = el("textarea", {
          rows: 2,
          lang: lang === "zh" ? "zh-CN" : "en",
          "data-span": span ? key : null,
          "data-kind": "text",
          disabled: !span,
        });
        area.value = span ? unquote(doc.sliceString(span.from, span.to)) : m[lang].value;
        area.addEventListener("input", () => writeSpan(key, JSON.stringify(area.value)));
        box.append(el("label", {}, el("span", { text: lang === "zh" ? "中文" : "English" }), area));
      }
      box.append(el("div", { class: "preview", "data-preview": `${m.rule}:${m.key}` }));
      return box;
    }),
  );
  if (focused) document.querySelector(`[data-span="${CSS.escape(focused)}"]`)?.focus();
  renderPreviews();
}

function outcomeLabel(m) {
  if (m.outcome) return t(`outcome_${m.outcome}`);
  return m.key === "recommendation" ? t("recommendation") : t("message");
}

// The preview of a message: what the edited ruleset says to the account being tried, when
// that account has the message's outcome (the texts are the server's, filled with its facts).
function renderPreviews() {
  const v = state.editedVerdict;
  for (const node of document.querySelectorAll("[data-preview]")) {
    const [rule, key] = node.dataset.preview.split(/:(.*)/s);
    const shown = v ? messageOf(v, rule, key) : null;
    node.classList.toggle("idle", !shown);
    node.textContent = shown
      ? `${t("previewFor", accountName(v))}${both(shown)}`
      : v ? t("previewOther", outcomeOf(v, rule)) : t("previewNone");
  }
}

function accountName(v) {
  const facts = state.triedFacts || {};
  return facts.name || v.account_id || "";
}
function outcomeOf(v, rule) {
  const c = (v.criteria || []).find((x) => x.rule === rule);
  if (c) return t(`outcome_${c.outcome}`);
  const tr = (v.trace || []).find((x) => x.rule === rule);
  return tr ? t(`outcome_${tr.outcome}`) : "—";
}
function messageOf(v, rule, key) {
  const c = (v.criteria || []).find((x) => x.rule === rule);
  if (c && key === `message.${c.outcome}`) return c.message;
  const g = (v.guardrails || []).find((x) => x.rule === rule);
  if (g && key === "message") return g.message;
  if (g && key === "recommendation") return g.recommendation;
  return null;
}

// ------------------------------------------------------------------ try an account

function currentFacts() {
  const pasted = $("#try-facts").value.trim();
  if (pasted) return JSON.parse(pasted);
  return state.samples[Number($("#try-select").value)] || state.samples[0];
}

async function tryAccount(version) {
  let facts;
  try {
    facts = currentFacts();
  } catch (e) {
    showTryError(t("factsNotJson", e.message));
    return;
  }
  if (!facts) return;
  try {
    const [served, edited] = await Promise.all([
      latest("try-served", "POST", "/v1/studio/evaluate",
        { name: RULESET, source: state.servedSource, facts, view: "full" }),
      latest("try-edited", "POST", "/v1/studio/evaluate",
        { name: RULESET, source: text(), facts, view: "full" }),
    ]);
    if (version !== undefined && version !== state.version) return;
    showTryError(null);
    state.servedVerdict = served;
    state.editedVerdict = edited;
    state.triedFacts = facts;
    renderTry(version ?? state.version);
    renderPreviews();
  } catch (e) {
    if (aborted(e)) return;
    const errs = e.body?.errors?.map((x) => `${(x.loc || []).join(".")}: ${x.msg}`).join("; ");
    showTryError(errs || e.message);
  }
}

function showTryError(message) {
  const node = $("#try-error");
  node.hidden = !message;
  node.textContent = message || "";
}

function label(kind, value) {
  if (value === null || value === undefined || value === "") return "—";
  const vocab = state.vocabulary?.[kind]?.[value];
  return vocab ? both(vocab) : String(value);
}

function findings(v) {
  return (v.guardrails || [])
    .map((g) => `[${t(`severity_${g.severity}`)}] ${both(g.message) || g.rule}`)
    .join("\n") || "—";
}
function paths(v) {
  return (v.what_it_would_take || [])
    .map((p) => both(p.message) || (p.changes || []).map((c) => c.fact).join(", "))
    .join("\n") || "—";
}

function renderTry(version) {
  const s = state.servedVerdict, e = state.editedVerdict;
  const rows = [
    ["qualification", (v) => label("qualifications", v.qualification)],
    ["score", (v) => String(v.score)],
    ["segments", (v) => (v.segments || []).map((x) => label("segments", x)).join(", ") || "—"],
    ["stage", (v) => label("stages", v.stage)],
    ["findings", findings],
    ["whatItWouldTake", paths],
  ];
  const body = $("#try-table tbody");
  body.replaceChildren(
    ...rows.map(([key, show]) => {
      const a = show(s), b = show(e);
      const row = el("tr", { "data-row": key, class: a === b ? "" : "changed" },
        el("th", { text: t(key) }),
        el("td", { class: a === b ? "same" : "", text: a }),
        el("td", { "data-edited": key, text: b }),
      );
      return row;
    }),
  );
  body.querySelectorAll("td").forEach((td) => (td.style.whiteSpace = "pre-line"));
  $("#try-table").dataset.version = String(version);
  $("#try-table").classList.toggle("stale", version !== state.version);
  $("#try-table").dataset.qualification = e.qualification;
}

// ------------------------------------------------------------------ impact

async function impact(version) {
  const summary = $("#impact-summary");
  summary.classList.add("busy");
  let report;
  try {
    report = await latest("impact", "POST", "/v1/studio/impact",
      { name: RULESET, source: text(), corpus: state.corpus || "shipped", top: 20 });
  } catch (e) {
    if (!aborted(e)) summary.textContent = e.message;
    return;
  } finally {
    summary.classList.remove("busy");
  }
  if (version !== state.version) return;
  state.lastImpact = report;
  renderImpact(report, version);
  record("impact", version);
}

function renderImpact(report, version) {
  const summary = $("#impact-summary");
  summary.textContent = t("impactSummary", report.changed, report.accounts, report.qualification_moved);
  summary.dataset.version = String(version);
  $("#impact-panel").classList.toggle("stale", version !== state.version);
  summary.dataset.changed = String(report.changed);
  summary.dataset.moved = String(report.qualification_moved);
  const quals = report.qualifications;
  const head = el("tr", {}, el("th", { text: t("baseHead") }),
    ...quals.map((q) => el("th", { text: label("qualifications", q) })));
  const rows = quals.map((b) =>
    el("tr", { "data-base": b }, el("th", { text: label("qualifications", b) }),
      ...quals.map((h) => {
        const n = report.transitions[b][h];
        return el("td", { "data-head": h, class: b !== h && n ? "moved" : "", text: String(n) });
      })),
  );
  $("#impact-matrix").replaceChildren(el("thead", {}, head), el("tbody", {}, ...rows));
  $("#impact-guardrails").replaceChildren(
    ...(report.guardrails.length ? report.guardrails.map((g) =>
      el("li", { text: t("guardLine", g.rule, g.newly_fired, g.cleared, g.severity_changed) }))
      : [el("li", { text: "—" })]),
  );
  const names = new Map((report.top || []).map((a) => [a.account_id, a.name]));
  $("#impact-changed").replaceChildren(
    ...report.changed_accounts.slice(0, 50).map((a) =>
      el("li", { "data-account": a.account_id,
        text: `${a.account_id}${names.get(a.account_id) ? ` ${names.get(a.account_id)}` : ""}: ` +
          `${label("qualifications", a.base)} → ${label("qualifications", a.head)}` })),
    ...(report.changed_accounts.length > 50 ? [el("li", { text: t("more", report.changed_accounts.length - 50) })] : []),
  );
}

// ------------------------------------------------------------------ save, versions, revert

async function save() {
  const status = $("#save-status");
  status.className = "";
  status.dataset.outcome = "saving";
  status.textContent = t("saving");
  const who = $("#save-who").value.trim();
  localStorage.setItem("kaq-studio-who", who);
  const body = { name: RULESET, source: text(), base_digest: state.baseDigest,
    note: $("#save-note").value, ...(who ? { who } : {}) };
  if (state.testsEdited) body.tests = testsEditor.state.doc.toString();
  try {
    const saved = await api("POST", "/v1/studio/save", body);
    await load(false, saved.digest);
    status.className = "ok";
    status.textContent = saved.saved ? t("saved", saved.digest) : t("unchanged", saved.digest);
    status.dataset.outcome = "saved";
  } catch (e) {
    status.dataset.outcome = e.status === 409 ? "conflict" : "rejected";
    status.className = e.status === 409 ? "conflict" : "rejected";
    if (e.status === 409) {
      status.replaceChildren(
        el("p", { text: t("conflict") }),
        el("button", { type: "button", id: "reload-latest", text: t("reloadLatest"),
          onclick: () => load(false).then(() => { status.replaceChildren(); }) }),
      );
      return;
    }
    const lines = [
      ...(e.body?.diagnostics || []).map((d) => `${d.file}:${d.line}:${d.col}: ${d.code}: ${d.message}`),
      ...(e.body?.failures || []),
    ];
    status.replaceChildren(el("p", { text: t("rejected") }), el("pre", { text: lines.join("\n\n") || e.message }));
    if (e.body?.failures?.length) $("#tests-panel").open = true;
  }
}

async function loadVersions() {
  const data = await api("GET", `/v1/rulesets/${RULESET}/versions`);
  $("#versions-list").replaceChildren(
    ...data.versions.map((v) =>
      el("li", { "data-digest": v.digest },
        el("span", { text: `${new Date(v.published_at).toLocaleString(state.lang === "zh" ? "zh-CN" : "en-GB")} · ${v.who || "—"} · ${v.note || "—"} · ` }),
        el("span", { class: "digest", text: v.digest.slice(7, 19) }),
        " ",
        v.current ? el("span", { class: "badge", text: t("current") })
          : el("button", { type: "button", "data-revert": v.digest, text: t("revert"),
            onclick: () => revert(v.digest) }),
      )),
  );
}

async function revert(digest) {
  const status = $("#save-status");
  try {
    const who = $("#save-who").value.trim();
    const saved = await api("POST", "/v1/studio/revert",
      { name: RULESET, digest, base_digest: state.baseDigest, ...(who ? { who } : {}) });
    status.className = "ok";
    await load(false, saved.digest);
    status.textContent = t("reverted", saved.digest);
  } catch (e) {
    status.className = e.status === 409 ? "conflict" : "rejected";
    status.textContent = e.status === 409 ? t("conflict") : `${t("rejected")} ${(e.body?.failures || []).join("\n")}`;
  }
}

// ------------------------------------------------------------------ loading, token, language

// `expect`: the digest just saved. Another worker of the server may answer before it has
// followed the save (it does within a poll): ask again until it serves that digest.
async function load(withSamples = true, expect = null) {
  let src, listing;
  for (let attempt = 0; ; attempt++) {
    [src, listing] = await Promise.all([
      api("GET", `/v1/studio/rulesets/${RULESET}/source`),
      fetch(`/v1/rulesets/${RULESET}`).then((r) => r.json()),
    ]);
    if (!expect || (src.digest === expect && listing.digest === expect) || attempt > 40) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  state.vocabulary = { qualifications: listing.qualifications, segments: listing.segments, stages: listing.stages };
  state.servedSource = src.source;
  state.servedTests = src.tests;
  state.baseDigest = src.digest;
  $("#ruleset-label").textContent = RULESET;
  $("#served-digest").textContent = src.digest.slice(0, 19);
  $("#served-digest").dataset.digest = src.digest;
  if (withSamples) {
    const samples = await api("GET", "/v1/studio/samples");
    state.samples = samples.accounts;
    $("#try-select").replaceChildren(
      ...state.samples.map((a, i) => el("option", { value: i, text: `${a.account_id} ${a.name || ""}` })),
    );
  }
  setText(editor, src.source);
  setText(testsEditor, src.tests || "");
  state.testsEdited = false;
  await loadVersions();
}

function askToken(message) {
  const dialog = $("#token-dialog");
  $("#token-error").hidden = !message;
  $("#token-error").textContent = message || "";
  if (!dialog.open) dialog.showModal();
}

function applyLanguage() {
  document.documentElement.lang = state.lang === "zh" ? "zh-CN" : "en";
  for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  $("#lang-switch").textContent = state.lang === "zh" ? "English" : "中文";
  document.title = t("title");
  renderForm();
  if (state.editedVerdict) renderTry(Number($("#try-table").dataset.version));
  if (state.lastImpact) renderImpact(state.lastImpact, Number($("#impact-summary").dataset.version));
  showDiagnostics(Number($("#diag-status").dataset.version), state.lastDiagnostics);
}

$("#lang-switch").addEventListener("click", () => {
  state.lang = state.lang === "zh" ? "en" : "zh";
  localStorage.setItem("kaq-studio-lang", state.lang);
  applyLanguage();
});
$("#token-button").addEventListener("click", () => askToken(null));
$("#token-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  state.token = $("#token-input").value.trim();
  sessionStorage.setItem("kaq-studio-token", state.token);
  $("#token-dialog").close();
  try {
    await load();
    $("#token-button").dataset.i18n = "changeToken";
    $("#token-button").textContent = t("changeToken");
  } catch (e) {
    if (e.status !== 401 && e.status !== 403) askToken(e.message);
  }
});
$("#save-button").addEventListener("click", save);
// The params and messages as an Excel workbook, and back into the text (nothing is saved:
// the imported values show in the form and the YAML, checked, ready to try and save).
$("#xlsx-export").addEventListener("click", async () => {
  const res = await fetch("/v1/studio/params/export", {
    method: "POST",
    headers: { authorization: `Bearer ${state.token}`, "content-type": "application/json" },
    body: JSON.stringify({ name: RULESET, source: text() }),
  });
  if (!res.ok) return;
  const url = URL.createObjectURL(await res.blob());
  el("a", { href: url, download: `${RULESET}-params.xlsx` }).click();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
});
$("#xlsx-import").addEventListener("change", async (ev) => {
  const file = ev.target.files[0];
  const list = $("#xlsx-problems");
  list.replaceChildren();
  if (!file) return;
  const bytes = new Uint8Array(await file.arrayBuffer());
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  try {
    const result = await api("POST", "/v1/studio/params/import",
      { name: RULESET, source: text(), workbook: btoa(binary) });
    if (result.problems.length) {
      list.replaceChildren(...result.problems.map((p) =>
        el("li", { text: `${file.name} ${p.sheet}!${p.column}${p.row}: ${p.message}` })));
      return;
    }
    if (result.changed.length) setText(editor, result.source);
    list.replaceChildren(el("li", { class: "ok", text: t("xlsxChanged", result.changed.length) }));
  } catch (e) {
    list.replaceChildren(el("li", { text: e.message }));
  } finally {
    ev.target.value = "";
  }
});
// An uploaded corpus (JSON Lines, or a JSON list; e.g. `kaq log export`): the impact on it.
$("#impact-file").addEventListener("change", async (ev) => {
  const file = ev.target.files[0];
  const note = $("#impact-corpus");
  if (!file) { state.corpus = null; note.textContent = t("corpusShipped"); return; }
  try {
    const body = (await file.text()).trim();
    let accounts = body.startsWith("[") || body.startsWith("{") && body.includes('"accounts"')
      ? JSON.parse(body) : body.split(/\n+/).filter((l) => l.trim()).map((l) => JSON.parse(l));
    if (!Array.isArray(accounts)) accounts = accounts.accounts;
    state.corpus = accounts;
    note.textContent = t("corpusUploaded", file.name, accounts.length);
  } catch (e) {
    state.corpus = null;
    note.textContent = t("corpusBad", file.name, e.message);
    return;
  }
  impact(state.version);
});
$("#try-select").addEventListener("change", () => { $("#try-facts").value = ""; tryAccount(); });
$("#try-facts").addEventListener("input", () => debounce("try", TRY_DELAY, () => tryAccount()));

$("#save-who").value = localStorage.getItem("kaq-studio-who") || "";
applyLanguage();
if (state.token) {
  load()
    .then(() => {
      $("#token-button").dataset.i18n = "changeToken";
      $("#token-button").textContent = t("changeToken");
    })
    .catch((e) => askToken(e.message));
}
else askToken(null);
