// The Incident Tracker's single-page app: plain JavaScript, no build step. It routes in the browser (the
// History API) and talks to the API under /api on the same origin, which headway's proxy sends to the api role.
"use strict";

const SEVERITIES = ["sev1", "sev2", "sev3", "sev4"];
const STATUSES = ["open", "investigating", "resolved"];
const view = document.getElementById("view");

// -- helpers -------------------------------------------------------------------------------------------------
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value !== false && value !== null && value !== undefined) node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

async function api(method, path, body) {
  const response = await fetch(`/api${path}`, {
    method,
    headers: body === undefined ? {} : { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 204) return null;
  const data = await response.json().catch(() => ({ detail: `${response.status} ${response.statusText}` }));
  if (!response.ok) {
    const detail = Array.isArray(data.detail)
      ? data.detail.map((d) => `${d.loc.slice(1).join(".")}: ${d.msg}`).join("; ")
      : data.detail;
    throw new Error(detail || `${response.status} ${response.statusText}`);
  }
  return data;
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "—";
}

function badge(severity) {
  return el("span", { class: `badge ${severity}` }, severity.toUpperCase());
}

function showError(error) {
  view.replaceChildren(el("p", { class: "error" }, `Something went wrong: ${error.message}`));
}

// -- views ---------------------------------------------------------------------------------------------------
async function listView(params) {
  const status = STATUSES.includes(params.get("status")) ? params.get("status") : null;
  const filters = el("div", { class: "filters" },
    el("a", { href: "/", "data-link": "", class: status ? "" : "active" }, "all"),
    STATUSES.map((s) => el("a", { href: `/?status=${s}`, "data-link": "", class: s === status ? "active" : "" }, s)));
  const incidents = await api("GET", `/incidents${status ? `?status=${status}` : ""}`);
  if (!incidents.length) {
    view.replaceChildren(filters, el("p", { class: "empty" }, "No incidents. ",
      el("a", { href: "/new", "data-link": "" }, "Report one"), "."));
    return;
  }
  const rows = incidents.map((i) => el("tr", {},
    el("td", {}, `#${i.id}`),
    el("td", {}, badge(i.severity)),
    el("td", {}, el("a", { href: `/incidents/${i.id}`, "data-link": "" }, i.title)),
    el("td", { class: "status" }, i.status),
    el("td", {}, when(i.created_at))));
  view.replaceChildren(filters, el("table", {},
    el("thead", {}, el("tr", {}, ["", "severity", "title", "status", "reported"].map((h) => el("th", {}, h)))),
    el("tbody", {}, rows)));
}

function newView() {
  const message = el("p", { class: "error" });
  const form = el("form", {
    onsubmit: async (event) => {
      event.preventDefault();
      const data = new FormData(form);
      try {
        const created = await api("POST", "/incidents", {
          title: data.get("title"), description: data.get("description"), severity: data.get("severity"),
        });
        navigate(`/incidents/${created.id}`);
      } catch (error) {
        message.textContent = error.message;
      }
    },
  },
  el("h2", {}, "Report an incident"),
  el("label", {}, "Title", el("input", { name: "title", required: "", maxlength: "200", autofocus: "" })),
  el("label", {}, "Severity", el("select", { name: "severity" },
    SEVERITIES.map((s) => el("option", { value: s, selected: s === "sev3" }, s.toUpperCase())))),
  el("label", {}, "What is happening", el("textarea", { name: "description", maxlength: "5000" })),
  message,
  el("div", {}, el("button", { type: "submit" }, "Report")));
  view.replaceChildren(form);
}

async function detailView(id) {
  const incident = await api("GET", `/incidents/${id}`);
  const setStatus = (status) => async () => {
    try {
      await api("PATCH", `/incidents/${id}`, { status });
      await detailView(id);
    } catch (error) {
      showError(error);
    }
  };
  const remove = async () => {
    if (!window.confirm(`Delete incident #${id}?`)) return;
    try {
      await api("DELETE", `/incidents/${id}`);
      navigate("/");
    } catch (error) {
      showError(error);
    }
  };
  view.replaceChildren(el("div", { class: "card" },
    el("h2", {}, badge(incident.severity), " ", incident.title),
    el("p", { class: "status" }, `#${incident.id} · ${incident.status} · reported ${when(incident.created_at)}`,
      incident.resolved_at ? ` · resolved ${when(incident.resolved_at)}` : ""),
    el("p", {}, incident.description || "No description."),
    el("div", { class: "actions" },
      STATUSES.filter((s) => s !== incident.status).map((s) =>
        el("button", { class: "secondary", onclick: setStatus(s) }, `Mark ${s}`)),
      el("button", { class: "danger", onclick: remove }, "Delete"))));
}

// -- routing -------------------------------------------------------------------------------------------------
async function render() {
  const { pathname, searchParams } = new URL(window.location.href);
  const detail = pathname.match(/^\/incidents\/(\d+)$/);
  try {
    if (pathname === "/") await listView(searchParams);
    else if (pathname === "/new") newView();
    else if (detail) await detailView(Number(detail[1]));
    else view.replaceChildren(el("p", { class: "empty" }, "Nothing here. ", el("a", { href: "/", "data-link": "" }, "All incidents"), "."));
  } catch (error) {
    showError(error);
  }
}

function navigate(path) {
  window.history.pushState({}, "", path);
  render();
}

document.addEventListener("click", (event) => {
  const link = event.target.closest("a[data-link]");
  if (!link || event.metaKey || event.ctrlKey || event.shiftKey || event.button !== 0) return;
  event.preventDefault();
  navigate(link.getAttribute("href"));
});
window.addEventListener("popstate", render);

async function showReleases() {
  const show = async (id, label, url) => {
    try {
      const response = await fetch(url, { cache: "no-store" });
      const data = await response.json();
      document.getElementById(id).textContent = `${label}: ${data.release}`;
    } catch {
      document.getElementById(id).textContent = `${label}: unreachable`;
    }
  };
  await Promise.all([show("release-frontend", "frontend", "/release.json"), show("release-api", "api", "/api/info")]);
}

render();
showReleases();
