// BEAR Serve dashboard: reads the public JSON API; changes send the X-API-Key typed in the page.
// No framework, no build step: plain DOM and SVG.
"use strict";

(() => {
  const KEY_STORE = "bear.apiKey";
  const POLL_ACTIVE_MS = 1500;
  const POLL_IDLE_MS = 10000;
  const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
  const $ = (id) => document.getElementById(id);

  const state = {
    models: [],       // ModelDetail objects
    jobs: new Map(),  // id -> {job, card, open, metricsAt}
    datasets: [],
  };

  // ---- helpers -------------------------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "text") node.textContent = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else if (name === "className") node.className = value;
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function svg(tag, attrs) {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
    return node;
  }

  function apiKey() {
    try {
      return sessionStorage.getItem(KEY_STORE) || "";
    } catch {
      return "";
    }
  }

  function setStatus(text, isError) {
    const node = $("status");
    node.textContent = text;
    node.classList.toggle("error", Boolean(isError));
  }

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function errorText(response) {
    let detail = response.statusText;
    try {
      const body = await response.json();
      detail = body.error || body.detail || JSON.stringify(body);
      if (typeof detail !== "string") detail = JSON.stringify(detail);
    } catch {
      /* not JSON: keep the status text */
    }
    return `${response.status}: ${detail}`;
  }

  async function api(path, options) {
    const opts = Object.assign({ method: "GET", headers: {} }, options || {});
    if (opts.json !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(opts.json);
      delete opts.json;
    }
    if (opts.admin) {
      const key = apiKey();
      if (!key) {
        $("api-key").focus();
        throw new ApiError(0, "enter the API key first (top of the page): changes need it");
      }
      opts.headers["X-API-Key"] = key;
      delete opts.admin;
    } else if (opts.inference && apiKey()) {
      opts.headers["X-API-Key"] = apiKey(); // only needed with BEAR_REQUIRE_KEY_FOR_INFERENCE
    }
    delete opts.inference;
    const response = await fetch(path, opts);
    if (!response.ok) throw new ApiError(response.status, await errorText(response));
    return response.status === 204 ? null : response.json();
  }

  function bytes(n) {
    const units = ["B", "KiB", "MiB", "GiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) {
      n /= 1024;
      i += 1;
    }
    return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
  }

  function duration(seconds) {
    if (!Number.isFinite(seconds) || seconds < 0) return "–";
    seconds = Math.round(seconds);
    const h = Math.floor(seconds / 3600);
    const m = Math.floor((seconds % 3600) / 60);
    const s = seconds % 60;
    if (h) return `${h} h ${m} min`;
    if (m) return `${m} min ${s} s`;
    return `${s} s`;
  }

  function when(iso) {
    if (!iso) return "–";
    const date = new Date(iso);
    return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
  }

  function num(value) {
    if (value === null || value === undefined) return "–";
    if (typeof value !== "number") return String(value);
    if (Number.isInteger(value)) return String(value);
    const abs = Math.abs(value);
    return abs !== 0 && (abs < 1e-3 || abs >= 1e5) ? value.toExponential(3) : value.toFixed(4);
  }

  function shape(list) {
    return `[${(list || []).join(", ")}]`;
  }

  // ---- API key ------------------------------------------------------------------------------

  function setupKey() {
    const input = $("api-key");
    input.value = apiKey();
    $("key-form").addEventListener("submit", (event) => {
      event.preventDefault();
      try {
        if (input.value) sessionStorage.setItem(KEY_STORE, input.value);
        else sessionStorage.removeItem(KEY_STORE);
      } catch {
        /* storage disabled: the key lives in the field only */
      }
      setStatus(input.value ? "API key set for this tab." : "API key cleared.");
    });
    input.addEventListener("change", () => {
      try {
        sessionStorage.setItem(KEY_STORE, input.value);
      } catch {
        /* ignore */
      }
    });
    $("key-forget").addEventListener("click", () => {
      input.value = "";
      try {
        sessionStorage.removeItem(KEY_STORE);
      } catch {
        /* ignore */
      }
      setStatus("API key forgotten.");
    });
  }

  // ---- models -------------------------------------------------------------------------------

  // The training parameters of versions published by jobs: the parameters a job was given are
  // the ones that differ from BEAR's defaults (manifests do not list them).
  function jobParams(name, version) {
    for (const { job } of state.jobs.values()) {
      if (job.model_name === name && job.model_version === version) return job.params;
    }
    return null;
  }

  async function loadModels() {
    try {
      const list = await api("/models");
      const details = await Promise.all(
        list.models.map((m) => api(`/models/${encodeURIComponent(m.name)}`)),
      );
      state.models = details;
      renderModels();
      renderTryVersions();
    } catch (err) {
      $("models-list").replaceChildren(el("p", { className: "error", text: err.message }));
    }
  }

  function provenanceText(p) {
    const parts = [];
    if (p.dataset_sha256) parts.push(`data sha256 ${String(p.dataset_sha256).slice(0, 12)}…`);
    if (p.n_transitions !== undefined) parts.push(`${p.n_transitions} transitions`);
    if (p.n_episodes !== undefined) parts.push(`${p.n_episodes} episodes`);
    if (p.epochs !== undefined) parts.push(`${p.epochs} epochs`);
    if (p.total_steps !== undefined) parts.push(`${p.total_steps} steps`);
    return parts.join(", ") || "–";
  }

  function finalMetrics(p) {
    const metrics = p.final_metrics;
    if (!metrics || typeof metrics !== "object") return null;
    const keys = Object.keys(metrics).slice(0, 6);
    if (!keys.length) return null;
    return keys.map((k) => `${k} ${num(metrics[k])}`).join(", ");
  }

  function renderModels() {
    const host = $("models-list");
    if (!state.models.length) {
      host.replaceChildren(el("p", { className: "muted", text: "No models in the store yet." }));
      return;
    }
    host.replaceChildren(...state.models.map(modelCard));
  }

  function modelCard(model) {
    const versions = model.versions.map((v) => v.version);
    const prod = model.production;
    const earlier = prod
      ? versions.filter((v) => Number(v) < Number(prod)).sort((a, b) => Number(b) - Number(a))
      : [];
    const message = el("p", { className: "error", role: "alert" });
    const act = (label, run) => async () => {
      message.textContent = "";
      try {
        await run();
        setStatus(label);
        await loadModels();
      } catch (err) {
        message.textContent = err.message;
        setStatus(err.message, true);
      }
    };
    const promote = (version) =>
      act(`${model.name}: version ${version} is in production.`, () =>
        api(
          `/models/${encodeURIComponent(model.name)}/versions/${version}/promote` +
            (prod ? `?expect=${prod}` : ""),
          { method: "POST", admin: true },
        ),
      );
    const remove = (version) => async () => {
      if (!window.confirm(`Delete ${model.name} version ${version}? This cannot be undone.`)) return;
      await act(`${model.name}: version ${version} deleted.`, () =>
        api(`/models/${encodeURIComponent(model.name)}/versions/${version}`, {
          method: "DELETE",
          admin: true,
        }),
      )();
    };

    const rows = model.versions
      .slice()
      .sort((a, b) => Number(b.version) - Number(a.version))
      .map((v) => {
        const m = v.manifest;
        const params = m && m.params_changed ? m.params_changed : jobParams(model.name, v.version);
        const final = m ? finalMetrics(m.provenance || {}) : null;
        return el(
          "tr",
          { className: v.production ? "production" : "", "data-version": v.version },
          el("th", { scope: "row" }, `v${v.version} `, v.production ? el("span", { className: "badge ok", text: "production" }) : null),
          el("td", { "data-label": "Created" }, m ? when(m.created) : "unreadable manifest"),
          el("td", { "data-label": "Shapes" }, m ? `obs ${shape(m.observation_shape)} → action ${m.action_size}` : "–"),
          el("td", { "data-label": "Critics" }, m ? `${m.n_critics} × ${m.q_func_type}` : "–"),
          el(
            "td",
            { "data-label": "Training data" },
            m ? provenanceText(m.provenance || {}) : "–",
            final ? el("div", { className: "muted small", text: `final: ${final}` }) : null,
          ),
          el(
            "td",
            { "data-label": "Params (non-default)" },
            params ? el("code", { text: JSON.stringify(params) }) : el("span", { className: "muted", text: "not recorded" }),
          ),
          el(
            "td",
            {},
            el(
              "div",
              { className: "actions" },
              v.production
              ? null
              : el("button", { type: "button", onclick: promote(v.version), "aria-label": `Promote ${model.name} version ${v.version}` }, "Promote"),
            v.production
              ? null
              : el("button", { type: "button", className: "danger", onclick: remove(v.version), "aria-label": `Delete ${model.name} version ${v.version}` }, "Delete"),
            ),
          ),
        );
      });

    return el(
      "article",
      { className: "card", "data-model": model.name },
      el(
        "div",
        { className: "card-head" },
        el("h3", {}, model.name, " ", el("span", { className: "muted", text: prod ? `production v${prod}` : "no production version" })),
        earlier.length
          ? el("button", { type: "button", onclick: promote(earlier[0]) }, `Roll back to v${earlier[0]}`)
          : null,
      ),
      message,
      el(
        "div",
        { className: "scroll" },
        el(
          "table",
          { className: "versions" },
          el("caption", { className: "sr-only", text: `Versions of ${model.name}` }),
          el(
            "thead",
            {},
            el("tr", {}, ["Version", "Created", "Shapes", "Critics", "Training data", "Params (non-default)", "Actions"].map((h) => el("th", { scope: "col", text: h }))),
          ),
          el("tbody", {}, rows),
        ),
      ),
    );
  }

  // ---- jobs ---------------------------------------------------------------------------------

  let jobsTimer = null;

  async function loadJobs() {
    clearTimeout(jobsTimer);
    let active = false;
    try {
      const list = await api("/jobs?limit=20");
      const seen = new Set();
      const host = $("jobs-list");
      if (!list.jobs.length) {
        host.replaceChildren(el("p", { className: "muted", text: "No training jobs yet." }));
      } else {
        host.querySelector("p.muted")?.remove();
      }
      let previousCard = null;
      for (const job of list.jobs) {
        seen.add(job.id);
        let entry = state.jobs.get(job.id);
        const finishedNow = entry && !TERMINAL.has(entry.job.state) && TERMINAL.has(job.state);
        if (!entry) {
          entry = { job, open: false, metricsAt: null };
          entry.card = jobCard(entry);
          state.jobs.set(job.id, entry);
        }
        entry.job = job;
        updateJobCard(entry);
        // newest first, keeping nodes (and focus) in place
        const want = previousCard ? previousCard.nextSibling : host.firstChild;
        if (want !== entry.card) host.insertBefore(entry.card, want);
        previousCard = entry.card;
        if (!TERMINAL.has(job.state)) active = true;
        if (entry.open && (!TERMINAL.has(job.state) || finishedNow || entry.metricsAt === null)) {
          await loadMetrics(entry);
        }
        if (finishedNow && job.model_version) loadModels();
      }
      for (const [id, entry] of state.jobs) {
        if (!seen.has(id)) {
          entry.card.remove();
          state.jobs.delete(id);
        }
      }
    } catch (err) {
      setStatus(`jobs: ${err.message}`, true);
    }
    jobsTimer = setTimeout(loadJobs, active ? POLL_ACTIVE_MS : POLL_IDLE_MS);
  }

  function jobCard(entry) {
    const id = entry.job.id;
    const bar = el("div", { className: "bar-fill" });
    const progress = el(
      "div",
      { className: "bar", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100", "aria-label": `progress of job ${id}` },
      bar,
    );
    const toggle = el("button", { type: "button", "aria-expanded": "false", "aria-controls": `curves-${id}` }, "Show curves");
    const cancel = el("button", { type: "button", className: "danger" }, "Cancel");
    const curves = el("div", { className: "curves", id: `curves-${id}`, hidden: true });
    const card = el(
      "article",
      { className: "card job", "data-job": id },
      el(
        "div",
        { className: "card-head" },
        el("h3", {}, el("code", { text: id }), " ", el("span", { className: "badge state" })),
        el("span", { className: "actions" }, toggle, cancel),
      ),
      el("p", { className: "job-what" }),
      progress,
      el("p", { className: "job-times small" }),
      el("pre", { className: "error job-error", hidden: true }),
      el("p", { className: "error job-message", role: "alert" }),
      curves,
    );
    entry.parts = { bar, progress, toggle, cancel, curves };
    toggle.addEventListener("click", () => {
      entry.open = !entry.open;
      updateJobCard(entry);
      if (entry.open) loadMetrics(entry);
    });
    cancel.addEventListener("click", async () => {
      const message = card.querySelector(".job-message");
      message.textContent = "";
      try {
        await api(`/jobs/${id}/cancel`, { method: "POST", admin: true });
        setStatus(`job ${id}: cancel requested.`);
        loadJobs();
      } catch (err) {
        message.textContent = err.message;
      }
    });
    return card;
  }

  function updateJobCard(entry) {
    const { job, card, parts } = entry;
    card.dataset.state = job.state;
    const badge = card.querySelector(".badge.state");
    badge.textContent = job.state;
    badge.className = `badge state ${job.state}`;
    const published = job.model_version ? ` → ${job.model_name} v${job.model_version}` : "";
    card.querySelector(".job-what").textContent =
      `${job.model_name} on dataset ${job.dataset_id}${published}` +
      (job.epoch !== null && job.n_epochs ? ` · epoch ${job.epoch}/${job.n_epochs}` : "") +
      (job.step !== null && job.total_steps ? ` · step ${job.step}/${job.total_steps}` : "");
    const pct = Math.round(job.progress * 100);
    parts.bar.style.width = `${pct}%`;
    parts.progress.setAttribute("aria-valuenow", String(pct));
    parts.progress.setAttribute("aria-valuetext", `${pct}%`);
    const start = job.started_at ? Date.parse(job.started_at) : null;
    const end = job.finished_at ? Date.parse(job.finished_at) : Date.now();
    let times = `created ${when(job.created_at)}`;
    if (start !== null) {
      const elapsed = (end - start) / 1000;
      times += ` · elapsed ${duration(elapsed)}`;
      if (!TERMINAL.has(job.state) && job.progress > 0 && job.progress < 1) {
        times += ` · about ${duration((elapsed * (1 - job.progress)) / job.progress)} left`;
      }
    }
    times += ` · ${pct}%`;
    card.querySelector(".job-times").textContent = times;
    const error = card.querySelector(".job-error");
    error.hidden = !job.error;
    error.textContent = job.error || "";
    parts.cancel.hidden = TERMINAL.has(job.state);
    parts.toggle.textContent = entry.open ? "Hide curves" : "Show curves";
    parts.toggle.setAttribute("aria-expanded", String(entry.open));
    parts.curves.hidden = !entry.open;
  }

  async function loadMetrics(entry) {
    try {
      const data = await api(`/jobs/${entry.job.id}/metrics`);
      entry.metricsAt = Date.now();
      const names = Object.keys(data.series).sort();
      if (!names.length) {
        entry.parts.curves.replaceChildren(
          el("p", { className: "muted", text: "No metrics logged yet (one point per finished epoch)." }),
        );
        return;
      }
      entry.parts.curves.replaceChildren(...names.map((name) => chart(name, data.series[name])));
    } catch (err) {
      entry.parts.curves.replaceChildren(el("p", { className: "error", text: err.message }));
    }
  }

  // A line chart of one metric against the step: one polyline per run of non-null values.
  function chart(name, series) {
    const W = 320;
    const H = 150;
    const pad = { l: 52, r: 10, t: 10, b: 24 };
    const points = [];
    series.value.forEach((v, i) => {
      if (v !== null && Number.isFinite(v)) points.push([series.step[i], v, i]);
    });
    const figure = el("figure", { className: "chart", "data-metric": name, "data-points": String(points.length) });
    const last = points.length ? points[points.length - 1][1] : null;
    figure.append(el("figcaption", {}, el("strong", { text: name }), ` last ${num(last)}`));
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `${name}: ${points.length} points, last ${num(last)}` });
    figure.append(root);
    if (!points.length) return figure;
    let [x0, x1] = [Math.min(...points.map((p) => p[0])), Math.max(...points.map((p) => p[0]))];
    let [y0, y1] = [Math.min(...points.map((p) => p[1])), Math.max(...points.map((p) => p[1]))];
    if (x0 === x1) [x0, x1] = [x0 - 1, x1 + 1];
    if (y0 === y1) [y0, y1] = [y0 - Math.abs(y0 || 1) * 0.1, y1 + Math.abs(y1 || 1) * 0.1];
    const sx = (x) => pad.l + ((x - x0) / (x1 - x0)) * (W - pad.l - pad.r);
    const sy = (y) => H - pad.b - ((y - y0) / (y1 - y0)) * (H - pad.t - pad.b);
    root.append(
      svg("line", { x1: pad.l, y1: H - pad.b, x2: W - pad.r, y2: H - pad.b, class: "axis" }),
      svg("line", { x1: pad.l, y1: pad.t, x2: pad.l, y2: H - pad.b, class: "axis" }),
    );
    const label = (x, y, text, anchor) => {
      const t = svg("text", { x, y, "text-anchor": anchor, class: "tick" });
      t.textContent = text;
      root.append(t);
    };
    label(pad.l - 4, pad.t + 8, num(y1), "end");
    label(pad.l - 4, H - pad.b, num(y0), "end");
    label(pad.l, H - 6, `step ${x0}`, "start");
    label(W - pad.r, H - 6, `${x1}`, "end");
    let run = [];
    const flush = () => {
      if (!run.length) return;
      root.append(svg("polyline", { points: run.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(" "), class: "line" }));
      if (run.length === 1 || points.length <= 60) {
        for (const [x, y] of run) root.append(svg("circle", { cx: sx(x).toFixed(1), cy: sy(y).toFixed(1), r: 2.5, class: "dot" }));
      }
      run = [];
    };
    let prevIndex = -2;
    for (const p of points) {
      if (p[2] !== prevIndex + 1) flush();
      run.push(p);
      prevIndex = p[2];
    }
    flush();
    return figure;
  }

  function setupTrainForm() {
    const form = $("train-form");
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const error = $("train-error");
      error.textContent = "";
      let params;
      try {
        params = JSON.parse($("train-params").value || "{}");
        if (!params || typeof params !== "object" || Array.isArray(params)) throw new Error("not an object");
      } catch (err) {
        error.textContent = `BEAR parameters: not a JSON object (${err.message})`;
        $("train-params").focus();
        return;
      }
      const body = {
        dataset_id: $("train-dataset").value,
        model_name: $("train-model").value.trim(),
        params,
        promote: $("train-promote").checked,
      };
      if ($("train-steps").value) body.n_steps = Number($("train-steps").value);
      if ($("train-seed").value) body.seed = Number($("train-seed").value);
      if ($("train-env").value.trim()) body.eval_env = $("train-env").value.trim();
      try {
        const job = await api("/train", { method: "POST", json: body, admin: true });
        setStatus(`Job ${job.id} queued.`);
        const entry = { job, open: true, metricsAt: null };
        entry.card = jobCard(entry);
        state.jobs.set(job.id, entry);
        $("jobs-list").querySelector("p.muted")?.remove();
        $("jobs-list").prepend(entry.card);
        updateJobCard(entry);
        loadJobs();
      } catch (err) {
        error.textContent = err.message;
      }
    });
  }

  // ---- datasets -----------------------------------------------------------------------------

  async function loadDatasets() {
    try {
      const list = await api("/datasets");
      state.datasets = list.datasets;
      renderDatasets();
    } catch (err) {
      $("datasets-list").replaceChildren(el("p", { className: "error", text: err.message }));
    }
  }

  function renderDatasets() {
    const host = $("datasets-list");
    const select = $("train-dataset");
    const chosen = select.value;
    select.replaceChildren(
      ...state.datasets
        .slice()
        .reverse()
        .map((d) => el("option", { value: d.id, selected: d.id === chosen }, `${d.filename} (${d.id})`)),
    );
    if (!state.datasets.length) {
      select.append(el("option", { value: "", text: "no dataset: upload one below" }));
      host.replaceChildren(el("p", { className: "muted", text: "No datasets yet." }));
      return;
    }
    host.replaceChildren(
      el(
        "table",
        { className: "datasets" },
        el("caption", { className: "sr-only", text: "Stored datasets" }),
        el("thead", {}, el("tr", {}, ["Id", "File", "Transitions", "Episodes", "Observation", "Action", "Size", "Uploaded"].map((h) => el("th", { scope: "col", text: h })))),
        el(
          "tbody",
          {},
          state.datasets.map((d) =>
            el(
              "tr",
              { "data-dataset": d.id },
              el("td", { "data-label": "Id" }, el("code", { text: d.id })),
              el("td", { "data-label": "File", text: d.filename }),
              el("td", { "data-label": "Transitions", text: String(d.n_transitions) }),
              el("td", { "data-label": "Episodes", text: String(d.n_episodes) }),
              el("td", { "data-label": "Observation", text: shape(d.observation_shape) }),
              el("td", { "data-label": "Action", text: String(d.action_size) }),
              el("td", { "data-label": "Size", text: bytes(d.size_bytes) }),
              el("td", { "data-label": "Uploaded", text: when(d.created) }),
            ),
          ),
        ),
      ),
    );
  }

  function setupUpload() {
    const form = $("upload-form");
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const file = $("upload-file").files[0];
      const status = $("upload-status");
      const bar = $("upload-progress");
      if (!file) {
        status.textContent = "choose a file first";
        return;
      }
      const key = apiKey();
      if (!key) {
        status.textContent = "enter the API key first (top of the page): uploads need it";
        $("api-key").focus();
        return;
      }
      const data = new FormData();
      data.append("file", file, file.name);
      const xhr = new XMLHttpRequest();
      xhr.open("POST", "/datasets");
      xhr.setRequestHeader("X-API-Key", key);
      xhr.responseType = "json";
      bar.hidden = false;
      bar.value = 0;
      status.textContent = `uploading ${file.name} (${bytes(file.size)})…`;
      xhr.upload.addEventListener("progress", (e) => {
        if (e.lengthComputable) {
          bar.value = e.loaded / e.total;
          status.textContent = `uploading ${file.name}: ${Math.round((100 * e.loaded) / e.total)}%`;
        }
      });
      xhr.addEventListener("load", () => {
        const body = xhr.response || {};
        if (xhr.status === 200 || xhr.status === 201) {
          bar.value = 1;
          status.textContent =
            xhr.status === 201 ? `stored as ${body.id}` : `already stored as ${body.id}`;
          loadDatasets();
        } else {
          status.textContent = `${xhr.status}: ${body.error || xhr.statusText}`;
        }
      });
      xhr.addEventListener("error", () => {
        status.textContent = "upload failed: the connection was lost";
      });
      xhr.send(data);
    });
  }

  // ---- try it -------------------------------------------------------------------------------

  function renderTryVersions() {
    const select = $("try-version");
    const chosen = select.value;
    const options = [];
    for (const model of state.models) {
      for (const v of model.versions.slice().sort((a, b) => Number(b.version) - Number(a.version))) {
        const value = `${model.name}/${v.version}`;
        const pick = chosen ? value === chosen : v.production && !options.some((o) => o.selected);
        options.push(el("option", { value, selected: pick }, `${model.name} v${v.version}${v.production ? " (production)" : ""}`));
      }
    }
    if (!options.length) options.push(el("option", { value: "", text: "no model yet" }));
    select.replaceChildren(...options);
    if (!chosen) prefillTry();
  }

  function selectedManifest() {
    const [name, version] = $("try-version").value.split("/");
    const model = state.models.find((m) => m.name === name);
    const detail = model && model.versions.find((v) => v.version === version);
    return detail ? detail.manifest : null;
  }

  function prefillTry() {
    const m = selectedManifest();
    if (!m) return;
    const width = m.observation_shape.reduce((a, b) => a * b, 1);
    $("try-obs").value = JSON.stringify([Array(width).fill(0)]);
    $("try-actions").value = JSON.stringify([Array(m.action_size).fill(0)]);
  }

  function setupTry() {
    $("try-version").addEventListener("change", prefillTry);
    $("try-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const verb = event.submitter ? event.submitter.value : "predict";
      const out = $("try-result");
      const [name, version] = $("try-version").value.split("/");
      if (!name) return;
      let observations;
      let actions;
      try {
        observations = JSON.parse($("try-obs").value);
        if (verb === "value") actions = JSON.parse($("try-actions").value);
      } catch (err) {
        out.replaceChildren(el("p", { className: "error", text: `not JSON: ${err.message}` }));
        return;
      }
      const path = `/models/${encodeURIComponent(name)}/versions/${version}/${verb}`;
      const body = verb === "value" ? { observations, actions, with_std: true } : { observations };
      try {
        const answer = await api(path, { method: "POST", json: body, inference: true });
        const rows =
          verb === "value"
            ? answer.values.map((v, i) => `Q = ${num(v)}` + (answer.stds ? ` ± ${num(answer.stds[i])} (std over critics)` : ""))
            : answer.actions.map((a) => `action ${shape(a.map(num))}`);
        out.replaceChildren(
          el("p", { className: "muted", text: `POST ${path} → ${answer.model} v${answer.version}` }),
          el("ol", {}, rows.map((r) => el("li", { text: r }))),
        );
      } catch (err) {
        out.replaceChildren(el("p", { className: "error", role: "alert", text: err.message }));
      }
    });
  }

  // ---- start --------------------------------------------------------------------------------

  function start() {
    setupKey();
    setupTrainForm();
    setupUpload();
    setupTry();
    $("models-refresh").addEventListener("click", loadModels);
    $("jobs-refresh").addEventListener("click", loadJobs);
    $("datasets-refresh").addEventListener("click", loadDatasets);
    loadDatasets();
    // jobs first: their parameters annotate the versions they published
    loadJobs().finally(loadModels);
  }

  start();
})();
