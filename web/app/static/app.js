// qpchat's web page: loads the client compiled to WebAssembly (qpchat.wasm,
// from ../../main.go), which installs globalThis.qpchat, and drives it.
// No HTML is ever built from strings (the page runs under Trusted Types):
// every node is made with createElement and filled with textContent.
"use strict";

const $ = (id) => document.getElementById(id);
let current = ""; // the group shown

// The last status lines, for tests and bug reports.
const statusLog = [];
window.qpchatStatusLog = statusLog;

function status(text, isError) {
  if (text) {
    statusLog.push(text);
    if (statusLog.length > 50) statusLog.shift();
  }
  const s = $("status");
  s.textContent = text;
  s.classList.toggle("error", !!isError);
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

// Paint the status before a long synchronous step (Argon2id runs on the
// page's thread in WebAssembly).
function nextPaint() {
  return new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
}

async function run(what, fn) {
  status(what + "…");
  await nextPaint();
  try {
    const r = await fn();
    status("");
    return r;
  } catch (e) {
    status(what + " failed: " + e.message, true);
    throw e;
  }
}

async function load() {
  const go = new Go();
  const ready = new Promise((r) => addEventListener("qpchat-ready", r, { once: true }));
  const t0 = performance.now();
  const res = await WebAssembly.instantiateStreaming(fetch("qpchat.wasm"), go.importObject);
  go.run(res.instance);
  await ready;
  document.body.dataset.loadMillis = String(Math.round(performance.now() - t0));
  qpchat.onEvent(onEvent);
  status("");
  $("signin").hidden = false;
  $("user").focus();
}

async function signIn(register) {
  const user = $("user").value.trim(), pw = $("password").value;
  if (!user || !pw) {
    status("Give a user name and a password.", true);
    return;
  }
  const what = register ? "Creating the account (deriving keys with Argon2id)" : "Logging in (deriving keys with Argon2id)";
  const t0 = performance.now();
  const me = await run(what, () => (register ? qpchat.register(user, pw) : qpchat.login(user, pw)));
  document.body.dataset.loginMillis = String(Math.round(performance.now() - t0));
  $("password").value = "";
  $("signin").hidden = true;
  $("main").hidden = false;
  $("logout").hidden = false;
  $("who").textContent = me.user + " · device " + me.device.slice(7, 19);
  $("who").dataset.user = me.user;
  await refreshGroups();
  await refreshDevices();
  $("new-group").focus();
}

async function refreshGroups() {
  const groups = (await qpchat.groups()) || [];
  const ul = $("groups");
  ul.replaceChildren();
  for (const g of groups) {
    const li = el("li", g.name + (g.removed ? " (left)" : "") + " · " + g.members);
    li.tabIndex = 0;
    li.dataset.group = g.name;
    li.id = "group-" + g.name;
    li.setAttribute("role", "button");
    if (g.name === current) li.setAttribute("aria-current", "true");
    li.addEventListener("click", () => openGroup(g.name));
    li.addEventListener("keydown", (e) => {
      if (e.key === "Enter" || e.key === " ") {
        e.preventDefault();
        openGroup(g.name);
      }
    });
    ul.append(li);
  }
}

async function refreshDevices() {
  const ds = (await qpchat.devices()) || [];
  const ul = $("devices");
  ul.replaceChildren();
  for (const d of ds) {
    const state = d.revoked ? "revoked" : d.approved ? "approved" : "pending approval";
    ul.append(el("li", d.device.slice(7, 19) + (d.self ? " (this browser)" : "") + " · " + state));
  }
}

function addMessage(ev) {
  const li = el("li");
  if (ev.kind === "message") {
    li.append(el("span", ev.outgoing ? "you" : ev.sender, "sender"), el("span", ev.text, "text"));
  } else {
    li.className = "system";
    li.textContent = ev.text;
  }
  li.dataset.kind = ev.kind;
  $("messages").append(li);
  li.scrollIntoView({ block: "nearest" });
}

async function openGroup(name) {
  current = name;
  delete document.body.dataset.opened;
  $("chat-title").textContent = name;
  for (const id of ["text", "send", "invite-users", "invite", "leave"]) $(id).disabled = false;
  $("messages").replaceChildren();
  for (const ev of (await qpchat.history(name)) || []) addMessage(ev);
  await refreshGroups();
  await refreshMembers();
  $("text").focus();
  document.body.dataset.opened = name; // the view is complete (tests wait for it)
}

async function refreshMembers() {
  if (!current) return;
  const ul = $("members");
  ul.replaceChildren();
  const me = $("who").dataset.user;
  const seen = new Set();
  for (const m of (await qpchat.members(current)) || []) {
    if (seen.has(m.user)) continue;
    seen.add(m.user);
    const li = el("li");
    li.dataset.user = m.user;
    li.append(el("strong", m.user + (m.self ? " (you)" : "")));
    if (m.user !== me) {
      const v = await qpchat.verify(m.user, false);
      li.append(el("span", v.verified ? " · verified" : " · not verified", "verified"));
      li.append(el("div", "Safety number: " + v.safetyNumber, "safety"));
      if (!v.verified) {
        const b = el("button", "Mark verified");
        b.type = "button";
        b.addEventListener("click", async () => {
          await run("Verifying " + m.user, () => qpchat.verify(m.user, true));
          await refreshMembers();
        });
        li.append(b);
      }
    }
    ul.append(li);
  }
}

function onEvent(ev) {
  if (ev.state) {
    status(ev.state === "connected" ? "" : "Connection: " + ev.state + (ev.error ? " (" + ev.error + ")" : ""), ev.state !== "connected");
  }
  if (!ev.kind) return;
  if (ev.group === current) addMessage(ev);
  if (ev.kind !== "message") {
    refreshGroups();
    if (ev.group === current) refreshMembers();
  }
}

addEventListener("DOMContentLoaded", () => {
  $("signin").addEventListener("submit", (e) => {
    e.preventDefault();
    signIn(false).catch(() => {});
  });
  $("register").addEventListener("click", () => signIn(true).catch(() => {}));
  $("logout").addEventListener("click", async () => {
    await qpchat.logout();
    location.reload();
  });
  $("create").addEventListener("submit", async (e) => {
    e.preventDefault();
    const name = $("new-group").value.trim();
    if (!name) return;
    await run("Creating " + name, () => qpchat.createGroup(name)).catch(() => {});
    $("new-group").value = "";
    await openGroup(name);
  });
  $("compose").addEventListener("submit", async (e) => {
    e.preventDefault();
    const text = $("text").value;
    if (!text || !current) return;
    $("text").value = "";
    try {
      await qpchat.send(current, text);
      addMessage({ kind: "message", outgoing: true, text });
    } catch (err) {
      status("Sending failed: " + err.message, true);
      $("text").value = text;
    }
  });
  $("invite-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const users = $("invite-users").value.split(",").map((s) => s.trim()).filter(Boolean);
    if (!users.length || !current) return;
    await run("Inviting " + users.join(", "), () => qpchat.invite(current, users)).catch(() => {});
    $("invite-users").value = "";
    await refreshMembers();
  });
  $("leave").addEventListener("click", async () => {
    if (!current || !confirm("Leave " + current + "?")) return;
    await run("Leaving " + current, () => qpchat.leave(current)).catch(() => {});
    await refreshGroups();
  });
  load().catch((e) => status("Could not start qpchat: " + e.message, true));
});
