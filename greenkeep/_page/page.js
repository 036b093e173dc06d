// greenkeep's supervision page: polls the JSON API (api/v1/...) relative to this page and
// renders the tree. No data is in the page itself; the token lives in this closure only
// (never in cookies or storage) and travels only in the Authorization header. Every text
// from the server is set with textContent: nothing it sends is ever parsed as HTML.
"use strict";
(function () {
  const SCHEMA = 1;
  const PAGE = 20;
  let token = "";
  let timer = null;
  let polling = false;
  const params = new URLSearchParams(window.location.search);
  let refresh = Number(params.get("refresh") || "2");
  const collapsed = new Set(); // supervisor paths the user folded
  const pools = new Map(); // pool path -> {offset, show}
  const shownWorkers = new Map(); // pool path -> its last rendered page of workers
  let armed = null; // {key, until}

  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") node.textContent = String(v);
      else if (k === "class") node.className = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }

  function headers(extra) {
    const h = Object.assign({ Accept: "application/json" }, extra || {});
    if (token) h.Authorization = "Bearer " + token;
    return h;
  }

  function status(text, error) {
    const s = $("status");
    s.textContent = text || "";
    s.className = error ? "status error" : "status";
  }

  function fmtInt(n) {
    return n === null || n === undefined ? "-" : Number(n).toLocaleString("en-US");
  }

  function fmtSeconds(s) {
    if (s === null || s === undefined) return "-";
    s = Math.max(0, Math.floor(s));
    const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600);
    const m = Math.floor((s % 3600) / 60), r = s % 60;
    if (d) return d + "d " + h + "h";
    if (h) return h + "h " + m + "m";
    if (m) return m + "m " + r + "s";
    return r + "s";
  }

  function stateBadge(state) {
    return el("span", { class: "state state-" + state, "data-state": state, text: state });
  }

  function message(text) {
    if (text === null || text === undefined) return null;
    if (text === "[message hidden]") return el("span", { class: "hidden-msg", text: text });
    return el("span", { class: "message", text: text });
  }

  function lastExit(exit) {
    const cell = el("td", { class: "msg" });
    if (!exit) return cell;
    cell.append(exit.reason);
    if (exit.type) cell.append(" \u00b7 " + exit.type);
    const m = message(exit.message);
    if (m) cell.append(": ", m);
    if (exit.ago !== undefined && exit.ago !== null) cell.append(" (" + fmtSeconds(exit.ago) + " ago)");
    return cell;
  }

  function sparkline(rate) {
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("class", "spark");
    svg.setAttribute("viewBox", "0 0 120 22");
    const counts = (rate && rate.sparkline) || [];
    const max = Math.max(1, ...counts.filter((n) => n !== null));
    const w = 120 / Math.max(1, counts.length);
    counts.forEach((n, i) => {
      const r = document.createElementNS(ns, "rect");
      const h = n === null ? 1 : Math.max(n ? 2 : 1, (20 * n) / max);
      r.setAttribute("x", String(i * w + 0.5));
      r.setAttribute("y", String(22 - h));
      r.setAttribute("width", String(Math.max(1, w - 1)));
      r.setAttribute("height", String(h));
      if (n === null || n === 0) r.setAttribute("class", "none");
      svg.append(r);
    });
    const title = document.createElementNS(ns, "title");
    title.textContent = "restarts per 10 s over the last 5 minutes (sampled while watched)";
    svg.append(title);
    return svg;
  }

  // ------------------------------------------------------------------ controls

  function controlButton(label, key, body) {
    const isArmed = armed && armed.key === key && armed.until > Date.now();
    return el("button", {
      type: "button",
      class: isArmed ? "control armed" : "control",
      "data-control": key,
      text: isArmed ? "confirm " + label : label,
      onclick: (ev) => {
        ev.stopPropagation();
        if (!(armed && armed.key === key && armed.until > Date.now())) {
          armed = { key: key, until: Date.now() + 5000 };
          ev.target.textContent = "confirm " + label;
          ev.target.className = "control armed";
          return;
        }
        armed = null;
        control(body);
      },
    });
  }

  async function control(body) {
    status("sending " + body.action + "...");
    try {
      const answer = await fetch("api/v1/control", {
        method: "POST",
        cache: "no-store",
        credentials: "omit",
        headers: headers({ "Content-Type": "application/json" }),
        body: JSON.stringify(body),
      });
      const data = await answer.json().catch(() => ({}));
      if (answer.ok) status(body.action + " done: " + body.path + (body.child_id !== undefined ? " / " + body.child_id : ""));
      else status(body.action + " refused (" + answer.status + "): " + (data.error || ""), true);
    } catch (e) {
      status(body.action + " failed: " + e, true);
    }
    poll();
  }

  // ------------------------------------------------------------------ rendering

  function header(node) {
    const summary = el(
      "summary",
      {},
      el("span", { class: "name", text: node.name }),
      el("span", { class: "kind", text: node.kind + " \u00b7 " + node.strategy }),
      stateBadge(node.state),
      el("span", {
        class: "numbers",
        text:
          "restarts " + fmtInt(node.restarts) +
          " \u00b7 last minute " + fmtInt(node.restart_rate.last_minute) +
          (node.restart_rate.sampled_for < 60 ? " (sampled " + fmtSeconds(node.restart_rate.sampled_for) + ")" : "") +
          " \u00b7 window " + fmtInt(node.restarts_in_period) + "/" + node.max_restarts + " in " + node.period + " s",
      }),
      sparkline(node.restart_rate)
    );
    return summary;
  }

  function errorBox(node) {
    if (!node.error) return null;
    return el("div", { class: "error-box", "data-error": node.path, text: node.error.text });
  }

  function storms(node) {
    if (!node.storms || !node.storms.length) return null;
    const list = el("ul", { class: "storms" });
    for (const s of node.storms) {
      const item = el("li", { "data-storm": s.error_type },
        el("b", { text: s.error_type }), " at " + s.location + ": " + fmtInt(s.total) + " crashes");
      if (s.sample) {
        item.append(" (e.g. child " + s.sample.child_id + " #" + s.sample.incarnation);
        const m = message(s.sample.message);
        if (m) item.append(": ", m);
        item.append(")");
      }
      list.append(item);
    }
    return el("div", {}, el("span", { class: "kind", text: "crash storms" }), list);
  }

  function counts(node) {
    const box = el("div", { class: "counts" });
    for (const [state, n] of Object.entries(node.counts || {})) {
      if (!n && state !== "running") continue;
      box.append(el("span", { class: "count", "data-count": state }, state + " ", el("b", { text: fmtInt(n) })));
    }
    return box;
  }

  function childRow(node, child, controls) {
    const row = el(
      "tr",
      { class: "child", "data-id": String(child.id), "data-state": child.state, "data-incarnation": child.incarnation },
      el("td", { text: String(child.id) }),
      el("td", {}, stateBadge(child.state)),
      el("td", { text: fmtInt(child.incarnation) }),
      el("td", { text: fmtSeconds(child.uptime) }),
      el("td", { text: fmtInt(child.restarts) + (child.restarts_last_minute !== undefined ? " (" + fmtInt(child.restarts_last_minute) + "/min)" : "") }),
      lastExit(child.last_exit)
    );
    const cell = el("td", {});
    if (controls) {
      const target = { path: node.path, child_id: child.id };
      cell.append(controlButton("restart", "restart:" + node.path + ":" + child.id, Object.assign({ action: "restart_child" }, target)));
      if (node.kind === "supervisor" && child.state === "running") {
        cell.append(" ", controlButton("terminate", "terminate:" + node.path + ":" + child.id, Object.assign({ action: "terminate_child" }, target)));
      }
    }
    row.append(cell);
    return row;
  }

  function table(node, children, controls) {
    const t = el("table", { class: "children" },
      el("thead", {}, el("tr", {}, ...["id", "state", "incarnation", "uptime", "restarts", "last exit", ""].map((h) => el("th", { text: h })))));
    const body = el("tbody", {});
    for (const child of children) body.append(childRow(node, child, controls));
    t.append(body);
    return t;
  }

  function poolSection(node, controls) {
    const section = el("div", { class: "pool", "data-pool": node.path });
    if (controls && node.state === "running") {
      const input = el("input", { type: "number", min: "0", value: String(node.size), "aria-label": "new size" });
      section.append(el("span", { class: "resize" }, "size ",
        input,
        el("button", { type: "button", "data-control": "resize:" + node.path, text: "resize",
          onclick: (ev) => { ev.stopPropagation(); control({ action: "resize", path: node.path, size: Number(input.value) }); } })));
    }
    const page = pools.get(node.path) || { offset: 0, show: "attention" };
    pools.set(node.path, page);
    const holder = el("div", { class: "workers", "data-workers": node.path },
      ...(shownWorkers.get(node.path) || [el("span", { class: "kind", text: "loading workers..." })]));
    section.append(holder);
    loadWorkers(node, page, holder, controls);
    return section;
  }

  async function loadWorkers(node, page, holder, controls) {
    const query = new URLSearchParams({ path: node.path, offset: String(page.offset), limit: String(PAGE), show: page.show });
    let data;
    try {
      const answer = await fetch("api/v1/supervisor?" + query, { cache: "no-store", credentials: "omit", headers: headers() });
      if (!answer.ok) { holder.textContent = "workers: " + answer.status; return; }
      data = await answer.json();
    } catch (e) {
      holder.textContent = "workers: " + e;
      return;
    }
    const c = data.children;
    const shown = c.items.length;
    const label = page.show === "attention" ? "not running or restarted in the last minute" : "all workers";
    const pager = el("div", { class: "pager" },
      el("span", { text: label + ": " + (shown ? (c.offset + 1) + "\u2013" + (c.offset + shown) : "0") + " of " + fmtInt(c.total) }),
      el("button", { type: "button", text: "previous", disabled: c.offset === 0,
        onclick: () => { page.offset = Math.max(0, page.offset - PAGE); poll(); } }),
      el("button", { type: "button", text: "next", disabled: c.offset + shown >= c.total,
        onclick: () => { page.offset += PAGE; poll(); } }),
      el("button", { type: "button", text: page.show === "attention" ? "show all" : "show attention only",
        onclick: () => { page.show = page.show === "attention" ? "all" : "attention"; page.offset = 0; poll(); } }));
    const content = [pager, table(node, c.items, controls)];
    shownWorkers.set(node.path, content);
    holder.replaceChildren(...content);
  }

  function renderNode(node, controls) {
    const details = el("details", { class: "sup", "data-path": node.path, "data-kind": node.kind, "data-state": node.state });
    details.open = !collapsed.has(node.path);
    details.addEventListener("toggle", () => {
      if (details.open) collapsed.delete(node.path);
      else collapsed.add(node.path);
    });
    details.append(header(node));
    const body = el("div", { class: "body" }, errorBox(node), storms(node), counts(node));
    if (node.kind === "pool") {
      if (details.open) body.append(poolSection(node, controls));
    } else {
      const children = node.children || [];
      body.append(table(node, children, controls));
      if (node.children_total > children.length) {
        body.append(el("p", { class: "kind", text: "showing " + children.length + " of " + fmtInt(node.children_total) + " children" }));
      }
      for (const child of children) {
        if (child.supervisor) body.append(renderNode(child.supervisor, controls));
      }
    }
    details.append(body);
    return details;
  }

  function render(data) {
    const tree = $("tree");
    const when = new Date(data.time * 1000).toLocaleTimeString();
    $("meta").textContent = "pid " + data.pid + " \u00b7 " + when + " \u00b7 " +
      (data.messages ? "messages shown" : "messages hidden") + (data.controls ? " \u00b7 controls on" : "");
    if (data.schema_version !== SCHEMA) {
      status("this page knows schema " + SCHEMA + ", the server sent " + data.schema_version, true);
    }
    if (!data.root) {
      tree.replaceChildren(el("p", { class: "empty", text: "No root supervisor in this process (yet)." }));
      return;
    }
    tree.replaceChildren(renderNode(data.root, data.controls));
  }

  // ------------------------------------------------------------------ polling

  async function poll() {
    if (polling) return;
    polling = true;
    clearTimeout(timer);
    try {
      const answer = await fetch("api/v1/tree", { cache: "no-store", credentials: "omit", headers: headers() });
      if (answer.status === 401) {
        $("tree").replaceChildren(el("p", { class: "empty", id: "need-token",
          text: token ? "The token was refused." : "This server needs a token: type it above." }));
        $("meta").textContent = "not authorized";
      } else if (!answer.ok) {
        status("the server answered " + answer.status, true);
      } else {
        render(await answer.json());
        if ($("status").className === "status error" && !armed) status("");
      }
    } catch (e) {
      status("cannot reach the server: " + e, true);
    } finally {
      polling = false;
      if (refresh > 0) timer = setTimeout(poll, refresh * 1000);
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    const select = $("refresh");
    if (![...select.options].some((o) => Number(o.value) === refresh)) {
      select.append(el("option", { value: String(refresh), text: refresh + " s" }));
    }
    select.value = String(refresh);
    select.addEventListener("change", () => { refresh = Number(select.value); poll(); });
    $("auth").addEventListener("submit", (ev) => {
      ev.preventDefault();
      token = $("token").value.trim();
      $("token").value = "";
      $("token").placeholder = token ? "token in use (memory only)" : "kept in this tab's memory only";
      poll();
    });
    $("forget-token").addEventListener("click", () => {
      token = "";
      $("token").placeholder = "kept in this tab's memory only";
      poll();
    });
    poll();
  });
})();
