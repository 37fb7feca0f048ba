/*! Leadflow embed.js: sends campaign forms to Leadflow. Docs: docs/embed.md */
(() => {
  "use strict";
  const w = window, d = document, me = d.currentScript;
  if (!me || w.Leadflow && w.Leadflow.version) return; // loaded twice
  const API = new URL(me.src, location.href).origin;
  const VERSION = "1";
  const P = "leadflow.", HP = "lf_hp", DAY = 864e5, SESSION_IDLE = 18e5, TOUCH_DAYS = 90;
  const UTM = ["utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content"];
  const CONTACT = ["firstName", "lastName", "email", "phone", "company"];
  const DETAILS = ["service_interest", "urgency", "message", "budget_range", "timeline"];
  const queued = Array.isArray(w.Leadflow) ? w.Leadflow : [];
  const tagConsent = me.getAttribute("data-leadflow-consent");
  let explicit = null;

  // Visible time on this page (Page Visibility API), counted from the navigation start.
  let visibleMs = 0, since = d.visibilityState === "visible" ? 0 : -1;
  d.addEventListener("visibilitychange", () => {
    const t = performance.now();
    if (d.visibilityState === "visible") since = t;
    else if (since >= 0) { visibleMs += t - since; since = -1; }
  });
  const visible = () => visibleMs + (since >= 0 ? performance.now() - since : 0);
  const shownAt = Date.now();

  // Consent: Leadflow.consent() wins; else Google Consent Mode's analytics_storage; else the tag's default.
  const consentMode = () => {
    let v = null;
    for (const e of w.dataLayer || []) {
      if (e && e[0] === "consent" && e[2] && e[2].analytics_storage) v = e[2].analytics_storage;
    }
    return v;
  };
  const granted = () => (explicit || consentMode() || tagConsent) === "granted";

  const storage = (name) => { try { return w[name]; } catch { return null; } };
  const read = (s, k) => { try { return JSON.parse(s.getItem(P + k)); } catch { return null; } };
  const write = (s, k, v) => { try { s.setItem(P + k, JSON.stringify(v)); } catch { /* full or blocked */ } };
  const remove = (s, k) => { try { s && s.removeItem(P + k); } catch { /* blocked */ } };
  const rid = (prefix) => {
    const a = crypto.getRandomValues(new Uint8Array(12));
    return prefix + Array.from(a, (b) => (b + 256).toString(16).slice(1)).join("");
  };
  const host = (url) => { try { return new URL(url).host; } catch { return ""; } };

  // Visitor (localStorage) and session (sessionStorage, ends after 30 idle minutes): only with consent.
  function track() {
    const L = storage("localStorage"), S = storage("sessionStorage");
    if (!granted() || !L || !S) { forget(); return null; }
    const now = Date.now();
    let v = read(L, "visitor");
    if (!v || !v.id || now - v.seen > 400 * DAY) v = { id: rid("vis_"), n: 0 };
    let s = read(S, "session");
    if (!s || !s.id || now - s.t > SESSION_IDLE) {
      v.n = (v.n || 0) + 1;
      const ref = d.referrer && host(d.referrer) !== location.host ? d.referrer : null;
      s = { id: rid("sess_"), ref, land: location.href };
    }
    s.t = v.seen = now;
    const q = new URLSearchParams(location.search), touch = {};
    for (const k of UTM) { const x = q.get(k); if (x) touch[k] = x.slice(0, 255); }
    if (Object.keys(touch).length) {
      touch.t = now;
      v.last = touch;
      if (!v.first) v.first = touch;
    }
    for (const k of ["first", "last"]) if (v[k] && now - v[k].t > TOUCH_DAYS * DAY) delete v[k];
    write(L, "visitor", v);
    write(S, "session", s);
    return { v, s };
  }

  // Consent withdrawn or unknown: no identifiers stay behind; unsent submissions move to the tab's session.
  function forget() {
    const L = storage("localStorage"), S = storage("sessionStorage");
    remove(L, "visitor");
    remove(S, "session");
    const moved = L && read(L, "outbox");
    if (moved && moved.length && S) write(S, "outbox", (read(S, "outbox") || []).concat(moved));
    remove(L, "outbox");
  }

  // The outbox: submissions not yet answered, resent (same Idempotency-Key) on the next page view.
  const box = () => storage(granted() ? "localStorage" : "sessionStorage");
  const pending = () => {
    const all = [];
    for (const n of ["localStorage", "sessionStorage"]) {
      const s = storage(n);
      for (const e of (s && read(s, "outbox")) || []) if (!all.some((x) => x.key === e.key)) all.push(e);
    }
    return all;
  };
  const drop = (key) => {
    for (const n of ["localStorage", "sessionStorage"]) {
      const s = storage(n), list = s && read(s, "outbox");
      if (!list) continue;
      const rest = list.filter((e) => e.key !== key);
      if (rest.length) write(s, "outbox", rest); else remove(s, "outbox");
    }
  };
  const keep = (entry) => {
    drop(entry.key);
    const s = box();
    if (s) write(s, "outbox", (read(s, "outbox") || []).concat([entry]).slice(-20));
  };

  function payload(form) {
    const data = new FormData(form);
    const get = (name) => {
      const v = data.get(name);
      return typeof v === "string" && v.trim() ? v.trim() : undefined;
    };
    const pick = (names) => Object.fromEntries(names.map((n) => [n, get(n)]).filter((p) => p[1] !== undefined));
    const now = Date.now(), ds = form.dataset;
    const body = {
      campaign_id: ds.leadflowCampaign,
      source: ds.leadflowSource || "embed",
      contact: pick(CONTACT),
      lead_details: pick(DETAILS),
      tracking: pick(UTM), // UTM inputs the page itself put in the form
      form_metadata: {
        form_type: ds.leadflowFormType || "embed",
        form_version: "embed.js/" + VERSION,
        consent_given: data.has("consent_given") && !/^(false|0|no)$/i.test(get("consent_given") || ""),
        consent_notice_version: get("consent_notice_version") || ds.leadflowNoticeVersion,
        timestamp: new Date(now).toISOString(),
        fill_time_seconds: Math.min((now - shownAt) / 1e3, 86400),
        honeypot: get(HP),
      },
    };
    const t = track();
    if (t) {
      const { v, s } = t, last = v.last || {};
      Object.assign(body.tracking, {
        visitor_id: v.id,
        session_id: s.id,
        referrer_url: s.ref || undefined,
        landing_page_url: s.land,
        user_agent: navigator.userAgent,
        time_on_page_seconds: Math.round(visible() / 1e3),
        returning_visitor: v.n > 1,
        visit_count: v.n,
        first_touch: v.first,
      });
      for (const k of UTM) if (!body.tracking[k] && last[k]) body.tracking[k] = last[k];
    }
    return body;
  }

  async function send(entry) {
    let res, body = null;
    try {
      const headers = { "Content-Type": "application/json", "Idempotency-Key": entry.key };
      if (entry.token) headers["X-Campaign-Token"] = entry.token;
      res = await fetch(API + "/v1/api/leads", {
        method: "POST", mode: "cors", credentials: "omit", headers, body: JSON.stringify(entry.body),
      });
    } catch {
      return { retry: 0 }; // offline, DNS, refused by CORS: indistinguishable here
    }
    try { body = await res.json(); } catch { /* not JSON */ }
    if (res.status === 429 || res.status >= 500) return { retry: Number(res.headers.get("Retry-After")) || 0 };
    return { status: res.status, body };
  }

  const setState = (form, state) => form.setAttribute("data-leadflow-state", state);
  const emit = (form, name, detail) =>
    form.dispatchEvent(new CustomEvent("leadflow:" + name, { detail, bubbles: true }));

  function message(form, text, kind) {
    let el = form.querySelector("[data-leadflow-message]");
    if (!el) {
      el = d.createElement("p");
      el.setAttribute("data-leadflow-message", "");
      el.setAttribute("role", "status");
      el.className = "leadflow-message";
      form.appendChild(el);
    }
    el.textContent = text;
    el.setAttribute("data-kind", kind);
  }

  const ALIAS = { first_name: "firstName", last_name: "lastName" };
  function clearErrors(form) {
    for (const el of form.querySelectorAll("[data-leadflow-error]")) {
      const input = form.querySelector(`[aria-describedby~="${el.id}"]`);
      if (input) {
        const rest = input.getAttribute("aria-describedby").split(/\s+/).filter((x) => x && x !== el.id);
        if (rest.length) input.setAttribute("aria-describedby", rest.join(" "));
        else input.removeAttribute("aria-describedby");
        input.removeAttribute("aria-invalid");
      }
      if (el.hasAttribute("data-leadflow-created")) el.remove(); else el.textContent = "";
    }
  }
  let seq = 0;
  function showError(form, err) {
    const text = (err && err.message) || "Something went wrong. Please try again.";
    const last = err && err.field ? String(err.field).split(".").pop() : "";
    let input = last ? form.elements.namedItem(ALIAS[last] || last) : null;
    if (input && !(input instanceof Element)) input = input[0]; // a radio group
    if (!input) { message(form, text, "error"); return; }
    let el = form.querySelector(`[data-leadflow-error-for="${input.name}"]`);
    if (!el) {
      el = d.createElement("span");
      el.className = "leadflow-error";
      el.setAttribute("data-leadflow-created", "");
      const anchor = input.closest("label") || input;
      anchor.insertAdjacentElement("afterend", el);
    }
    el.id = el.id || "leadflow-error-" + ++seq;
    el.setAttribute("data-leadflow-error", "");
    el.textContent = text;
    const ids = (input.getAttribute("aria-describedby") || "").split(/\s+/).filter(Boolean);
    input.setAttribute("aria-describedby", ids.concat([el.id]).join(" "));
    input.setAttribute("aria-invalid", "true");
    message(form, "Please check the highlighted field.", "error");
    input.focus();
  }

  const wait = (ms) => new Promise((done) => {
    const go = () => { clearTimeout(timer); w.removeEventListener("online", go); done(); };
    const timer = setTimeout(go, ms);
    w.addEventListener("online", go);
  });

  // Send until answered: network errors, 5xx and 429 are retried with backoff (Retry-After honoured).
  async function deliver(entry, form) {
    for (let attempt = 0; ; attempt++) {
      const r = await send(entry);
      if (r.retry === undefined) return finish(entry, form, r);
      const offline = navigator.onLine === false;
      // Give up on this page view after 5 tries or when told to wait over a minute; the outbox keeps it.
      if (!form || (!offline && (attempt >= 5 || r.retry > 60))) {
        entry.tries = (entry.tries || 0) + 1;
        if (entry.tries > 20) drop(entry.key); else keep(entry);
        if (form) {
          setState(form, "error");
          const err = { success: false, error: "NETWORK_ERROR", message: "We could not reach the server. " +
            "Your request is saved and will be sent on your next visit.", field: null, code: 0 };
          message(form, err.message, "error");
          emit(form, "error", err);
        }
        return;
      }
      if (offline) message(form, "You are offline. We will send your request when you are back online.", "info");
      const backoff = Math.min(3e4, 1e3 * 2 ** attempt) * (0.5 + Math.random() / 2);
      await wait(offline ? 5e3 : Math.max(r.retry * 1e3, backoff));
    }
  }

  function finish(entry, form, r) {
    drop(entry.key);
    if (!form) return;
    const body = r.body || {};
    if (r.status < 300 || (r.status === 409 && body.error === "DUPLICATE_SUBMISSION")) {
      setState(form, "success");
      const done = form.querySelector("[data-leadflow-success]");
      if (done) {
        done.hidden = false;
        done.tabIndex = -1;
        done.focus();
        message(form, "", "success");
      }
      else message(form, "Thank you! We received your request.", "success");
      emit(form, "success", { lead_id: body.lead_id });
      const next = form.dataset.leadflowRedirect;
      if (next) location.assign(next);
    } else {
      setState(form, "error");
      showError(form, body);
      emit(form, "error", body);
    }
  }

  function onSubmit(event) {
    const form = event.currentTarget;
    event.preventDefault();
    if (form.getAttribute("data-leadflow-state") === "sending") return;
    clearErrors(form);
    message(form, "Sending…", "info");
    setState(form, "sending");
    const entry = { key: rid("lf_"), body: payload(form), token: form.dataset.leadflowToken || null, at: Date.now() };
    keep(entry);
    deliver(entry, form);
  }

  function scan() {
    for (const form of d.querySelectorAll("form[data-leadflow-campaign]")) {
      if (form.leadflowBound) continue;
      form.leadflowBound = true;
      if (!form.elements.namedItem(HP)) {
        const trap = d.createElement("div"), input = d.createElement("input");
        trap.setAttribute("aria-hidden", "true");
        trap.style.cssText = "position:absolute;left:-10000px;width:1px;height:1px;overflow:hidden";
        Object.assign(input, { name: HP, tabIndex: -1, autocomplete: "off", type: "text" });
        trap.appendChild(input);
        form.appendChild(trap);
      }
      form.addEventListener("submit", onSubmit);
    }
  }

  // What earlier page views could not send (at most a week old), in the background.
  function flush() {
    const now = Date.now();
    for (const entry of pending()) {
      if (now - entry.at > 7 * DAY) drop(entry.key); else deliver(entry, null);
    }
  }

  const api = {
    version: VERSION,
    consent(state) {
      if (state !== "granted" && state !== "denied") throw new TypeError('consent is "granted" or "denied"');
      explicit = state;
      if (state === "granted") track(); else forget();
    },
    scan,
    flush,
    push([method, ...args]) { if (typeof api[method] === "function") api[method](...args); }, // the queue's
  };
  w.Leadflow = api;
  for (const entry of queued) api.push(entry);
  const start = () => { track(); scan(); flush(); };
  if (d.readyState === "loading") d.addEventListener("DOMContentLoaded", start); else start();
})();
