// fanline's web app: a hash router over four views (log in, home timeline, a user's page, the
// pipeline), talking to the JSON API under /v1. No framework, no build step: the DOM is built
// with el() and textContent only, so a post's body can never become markup.
"use strict";

const POLL_MS = 2000;
const MAX_POST = 500;
const PAGE = 20;
const SESSION_KEY = "fanline.session";

// --- small helpers ---------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (value === true) node.setAttribute(name, "");
    else if (value !== false && value != null) node.setAttribute(name, String(value));
  }
  for (const child of children.flat()) {
    if (child != null) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const SVG_NS = "http://www.w3.org/2000/svg";
function svg(tag, attrs = {}) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  return node;
}

function say(message) {
  const status = document.getElementById("status");
  status.textContent = message;
  clearTimeout(say.timer);
  say.timer = setTimeout(() => { status.textContent = ""; }, 4000);
}

function session() {
  try { return JSON.parse(localStorage.getItem(SESSION_KEY)); } catch { return null; }
}

function setSession(value) {
  if (value) localStorage.setItem(SESSION_KEY, JSON.stringify(value));
  else localStorage.removeItem(SESSION_KEY);
  registered = null;
  showWhoami();
}

// A new account's registration reaches the store a moment after sign-up; reads about the user
// themself (whom they follow, suggestions) wait for it once, through a consistent_after read.
let registered = null;
function ownRegistration() {
  const me = session();
  if (!me || !me.since) return Promise.resolve();
  if (!registered) {
    const query = new URLSearchParams({ limit: "1", consistent_after: me.since });
    registered = api("GET", `/v1/users/${encodeURIComponent(me.user_id)}/timeline?${query}`).catch(() => {});
  }
  return registered;
}

class ApiError extends Error {
  constructor(status, body) {
    super(body && body.error ? body.error.message : `HTTP ${status}`);
    this.status = status;
  }
}

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  const me = session();
  if (me) headers.Authorization = `Bearer ${me.token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const answer = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const data = answer.status === 204 ? null : await answer.json().catch(() => null);
  if (answer.status === 401 && me) {
    setSession(null);
    location.hash = "#/login";
  }
  if (!answer.ok) throw new ApiError(answer.status, data);
  return data;
}

const handles = new Map(); // user id -> handle, filled as profiles are read
async function profile(userId) {
  const user = await api("GET", `/v1/users/${encodeURIComponent(userId)}`);
  handles.set(user.user_id, user.handle);
  return user;
}

function userLink(userId, handle) {
  return el("a", { href: `#/u/${encodeURIComponent(userId)}` }, handle ? `@${handle}` : userId);
}

function plural(n, word) {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

function when(ms) {
  const time = new Date(ms);
  return el("time", { datetime: time.toISOString() }, time.toLocaleString());
}

// Pages are newest first by (created_at, post_id), as the API orders them.
function newer(a, b) {
  return a.created_at !== b.created_at ? a.created_at > b.created_at : a.post_id > b.post_id;
}

// --- a list of posts with infinite scroll and live updates ------------------------------------

class PostList {
  // fetchPage(cursor, consistentAfter) -> {items, next_cursor}
  constructor(fetchPage, label) {
    this.fetchPage = fetchPage;
    this.items = [];
    this.gone = new Set(); // deleted here: never shown again, even by a read older than the delete
    this.cursor = null;
    this.done = false;
    this.loading = false;
    this.list = el("ol", { class: "posts", "aria-label": label });
    this.empty = el("p", { class: "hint" });
    this.moreButton = el("button", { type: "button", class: "secondary", onclick: () => this.more() }, "Load older posts");
    this.more_ = el("div", { class: "more" }, this.moreButton);
    this.node = el("section", {}, this.list, this.empty, this.more_);
    // Infinite scroll: the "Load older posts" button doubles as the sentinel (and keyboard route).
    this.observer = new IntersectionObserver((seen) => { if (seen.some((e) => e.isIntersecting)) this.more(); });
    this.timer = null;
    this.announce = false; // say "n new posts" (the home timeline)
  }

  // Load pages as the end comes into view, and re-read the first page every POLL_MS.
  start() {
    this.observer.observe(this.more_);
    this.timer = setInterval(() => {
      if (document.hidden) return;
      this.refresh().then((n) => { if (n && this.announce) say(`${n} new post${n > 1 ? "s" : ""}`); }).catch(() => {});
    }, POLL_MS);
  }

  stop() { this.observer.disconnect(); clearInterval(this.timer); }

  async more() {
    if (this.loading || this.done) return;
    this.loading = true;
    try {
      const page = await this.fetchPage(this.cursor, null);
      const known = new Set(this.items.map((i) => i.post_id));
      this.items.push(...page.items.filter((i) => !known.has(i.post_id)));
      this.cursor = page.next_cursor;
      this.done = !page.next_cursor;
      this.render();
    } catch (error) {
      say(`Could not load posts: ${error.message}`);
    } finally {
      this.loading = false;
    }
  }

  // Re-read the first page: add what is new, drop what vanished from its range (deleted, unfollowed).
  async refresh(consistentAfter = null) {
    const page = await this.fetchPage(null, consistentAfter);
    const fresh = new Set(page.items.map((i) => i.post_id));
    const oldest = page.items[page.items.length - 1];
    const covered = (i) => !page.next_cursor || !oldest || !newer(oldest, i);
    const kept = this.items.filter((i) => fresh.has(i.post_id) || !covered(i));
    const known = new Set(kept.map((i) => i.post_id));
    const added = page.items.filter((i) => !known.has(i.post_id));
    this.items = [...added, ...kept].sort((a, b) => (newer(a, b) ? -1 : 1));
    if (this.cursor === null && !this.done) { this.cursor = page.next_cursor; this.done = !page.next_cursor; }
    this.render();
    return added.length;
  }

  remove(postId) {
    this.gone.add(postId);
    this.items = this.items.filter((i) => i.post_id !== postId);
    this.render();
  }

  render() {
    const me = session();
    this.items = this.items.filter((i) => !this.gone.has(i.post_id));
    this.list.replaceChildren(...this.items.map((item) => {
      const head = el("div", { class: "post-head" }, userLink(item.author_id, item.author_handle), when(item.created_at));
      if (me && item.author_id === me.user_id) {
        head.append(el("button", { type: "button", class: "danger", "aria-label": `Delete post: ${item.body.slice(0, 40)}`,
          onclick: () => deletePost(item.post_id, this) }, "Delete"));
      }
      return el("li", { "data-post-id": item.post_id }, head, el("p", { class: "post-body" }, item.body));
    }));
    this.empty.textContent = this.items.length ? "" : (this.done ? "Nothing here yet." : "Loading…");
    this.more_.hidden = this.done;
  }
}

async function deletePost(postId, list) {
  if (!confirm("Delete this post?")) return;
  try {
    const answer = await api("DELETE", `/v1/posts/${encodeURIComponent(postId)}`);
    list.remove(postId);
    say("Post deleted");
    // Until the processors apply the delete, a refresh could bring the post back: wait for it.
    await list.refresh(answer.consistency_token);
  } catch (error) {
    say(`Could not delete: ${error.message}`);
  }
}

function timelineOf(userId) {
  return (cursor, consistentAfter) => {
    const query = new URLSearchParams({ limit: String(PAGE) });
    if (cursor) query.set("cursor", cursor);
    if (consistentAfter) query.set("consistent_after", consistentAfter);
    return api("GET", `/v1/users/${encodeURIComponent(userId)}/timeline?${query}`);
  };
}

function postsOf(userId) {
  return (cursor) => {
    const query = new URLSearchParams({ limit: String(PAGE) });
    if (cursor) query.set("cursor", cursor);
    return api("GET", `/v1/users/${encodeURIComponent(userId)}/posts?${query}`);
  };
}

// --- views -------------------------------------------------------------------------------------
// Each view renders into <main> and returns a cleanup function (stops its timers).

function field(id, label, input, hint) {
  return el("div", { class: "field" }, el("label", { for: id }, label), input, hint ? el("span", { class: "hint", id: `${id}-hint` }, hint) : null);
}

function loginView(main) {
  const signupError = el("p", { class: "error", role: "alert" });
  const loginError = el("p", { class: "error", role: "alert" });

  async function submit(event, path, error) {
    event.preventDefault();
    const form = event.target;
    const body = Object.fromEntries(new FormData(form));
    if (!body.display_name) delete body.display_name;
    error.textContent = "";
    try {
      const answer = await api("POST", path, body);
      setSession({ user_id: answer.user_id, token: answer.token, handle: body.handle, since: answer.consistency_token || null });
      location.hash = "#/";
    } catch (e) {
      error.textContent = e.message;
    }
  }

  main.append(el("h1", {}, "Welcome to fanline"), el("div", { class: "forms" },
    el("form", { class: "card", "aria-labelledby": "signup-title", onsubmit: (e) => submit(e, "/v1/auth/signup", signupError) },
      el("h2", { id: "signup-title" }, "Sign up"),
      field("signup-handle", "Handle", el("input", { id: "signup-handle", name: "handle", required: true, pattern: "[a-z0-9_]{3,30}",
        autocomplete: "username", "aria-describedby": "signup-handle-hint" }), "3–30 of a–z, 0–9 and _"),
      field("signup-name", "Display name (optional)", el("input", { id: "signup-name", name: "display_name", maxlength: 100, autocomplete: "name" })),
      field("signup-password", "Password", el("input", { id: "signup-password", name: "password", type: "password", required: true,
        minlength: 8, autocomplete: "new-password", "aria-describedby": "signup-password-hint" }), "At least 8 characters"),
      el("button", { type: "submit" }, "Sign up"), signupError),
    el("form", { class: "card", "aria-labelledby": "login-title", onsubmit: (e) => submit(e, "/v1/auth/login", loginError) },
      el("h2", { id: "login-title" }, "Log in"),
      field("login-handle", "Handle", el("input", { id: "login-handle", name: "handle", required: true, autocomplete: "username" })),
      field("login-password", "Password", el("input", { id: "login-password", name: "password", type: "password", required: true,
        autocomplete: "current-password" })),
      el("button", { type: "submit" }, "Log in"), loginError)));
  return () => {};
}

function composer(onPosted) {
  const text = el("textarea", { id: "compose", name: "body", "aria-describedby": "compose-count", rows: 3 });
  const counter = el("span", { id: "compose-count", class: "counter", "aria-live": "polite" });
  const button = el("button", { type: "submit" }, "Post");
  const error = el("p", { class: "error", role: "alert" });
  function update() {
    // The API counts characters (code points) after trimming, so count the same way here.
    const length = [...text.value.trim()].length;
    counter.textContent = `${MAX_POST - length} characters left`;
    counter.classList.toggle("over", length > MAX_POST);
    button.disabled = length === 0 || length > MAX_POST;
  }
  text.addEventListener("input", update);
  update();
  return el("form", { class: "card", "aria-label": "Compose a post", onsubmit: async (event) => {
    event.preventDefault();
    error.textContent = "";
    button.disabled = true;
    try {
      const answer = await api("POST", "/v1/posts", { body: text.value });
      text.value = "";
      say("Posted");
      await onPosted(answer.consistency_token);
    } catch (e) {
      error.textContent = e.message;
    } finally {
      update();
    }
  } }, el("label", { id: "compose-label", for: "compose" }, "What's happening?"), text,
  el("div", { class: "compose-row" }, counter, button), error);
}

function homeView(main) {
  const me = session();
  if (!me) { location.hash = "#/login"; return () => {}; }
  const list = new PostList(timelineOf(me.user_id), "Home timeline");
  const suggestions = el("ul");
  main.append(
    el("h1", {}, "Home"),
    el("p", { class: "hint" }, "You are ", userLink(me.user_id, me.handle), ` (user id ${me.user_id}).`),
    composer(async (token) => { await list.refresh(token); }),
    el("h2", {}, "Who to follow"), suggestions,
    el("h2", {}, "Your timeline"), list.node);
  // The first page waits for our own registration (or last write) to be reflected.
  list.announce = true;
  list.start();
  ownRegistration().then(() => api("GET", `/v1/users/${encodeURIComponent(me.user_id)}/suggestions?limit=5`)).then((answer) => {
    suggestions.replaceChildren(...answer.items.map((s) => el("li", {}, userLink(s.user_id, s.handle), ` (${s.score} in common)`)));
    if (!answer.items.length) suggestions.replaceChildren(el("li", { class: "hint" }, "No suggestions yet: follow someone first."));
  }).catch(() => {});
  // New posts appear without a reload: the list polls its first page (the API has no push channel).
  return () => list.stop();
}

async function follows(viewerId, userId) {
  // Whether the viewer follows userId: page through the viewer's following list (ids in order).
  let cursor = null;
  do {
    const query = new URLSearchParams({ limit: "200" });
    if (cursor) query.set("cursor", cursor);
    const page = await api("GET", `/v1/users/${encodeURIComponent(viewerId)}/following?${query}`);
    if (page.items.includes(userId)) return true;
    cursor = page.next_cursor;
  } while (cursor);
  return false;
}

function idList(userId, which, title) {
  const list = el("ul", { "aria-label": title });
  const section = el("section", {}, el("h2", {}, title), list);
  api("GET", `/v1/users/${encodeURIComponent(userId)}/${which}?limit=50`).then(async (page) => {
    const users = await Promise.all(page.items.map((id) => profile(id).catch(() => ({ user_id: id, handle: null }))));
    list.replaceChildren(...users.map((u) => el("li", {}, userLink(u.user_id, u.handle))));
    if (!users.length) list.replaceChildren(el("li", { class: "hint" }, "Nobody yet."));
    if (page.next_cursor) list.append(el("li", { class: "hint" }, "… and more"));
  }).catch((e) => list.replaceChildren(el("li", { class: "error" }, e.message)));
  return section;
}

function userView(main, userId) {
  const me = session();
  const head = el("div");
  const lists = el("div", { class: "lists" });
  const posts = new PostList(postsOf(userId), "Posts");
  main.append(head, lists, el("h2", {}, "Posts"), posts.node);
  let following = false;
  const button = el("button", { type: "button", id: "follow-button" });

  async function render() {
    let user;
    await ownRegistration(); // "My page" right after signing up
    try { user = await profile(userId); } catch (e) {
      head.replaceChildren(el("h1", {}, "User"), el("p", { class: "error", role: "alert" }, e.message));
      return;
    }
    if (!posts.timer) posts.start(); // only for a user that exists
    const isMe = me && me.user_id === userId;
    const title = el("h1", {}, user.display_name || `@${user.handle}`, " ");
    if (user.celebrity) title.append(el("span", { class: "badge" }, "celebrity"));
    head.replaceChildren(title,
      el("p", { class: "hint" }, `@${user.handle} · user id ${user.user_id}`),
      el("div", { class: "counts" }, el("span", { id: "followers-count" }, plural(user.followers, "follower")),
        el("span", { id: "following-count" }, `${user.following} following`)));
    if (me && !isMe) {
      following = await follows(me.user_id, userId);
      button.textContent = following ? `Unfollow @${user.handle}` : `Follow @${user.handle}`;
      button.className = following ? "secondary" : "";
      head.append(button);
    }
    lists.replaceChildren(idList(userId, "followers", "Followers"), idList(userId, "following", "Following"));
  }

  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      const answer = following
        ? await api("DELETE", `/v1/follows/${encodeURIComponent(userId)}`)
        : await api("POST", "/v1/follows", { followee_id: userId });
      say(following ? "Unfollowed" : "Followed");
      // Read our timeline after the write so the counts below include it (read-your-writes).
      await api("GET", `/v1/users/${encodeURIComponent(me.user_id)}/timeline?limit=1&consistent_after=${encodeURIComponent(answer.consistency_token)}`);
      await render();
    } catch (e) {
      say(`Could not change the follow: ${e.message}`);
    } finally {
      button.disabled = false;
    }
  });
  render();
  return () => posts.stop();
}

// --- the pipeline page ---------------------------------------------------------------------------

const HISTORY = 60; // points per chart: two minutes at one answer per 2 s

function sparkline(values, label) {
  const chart = svg("svg", { viewBox: "0 0 300 60", preserveAspectRatio: "none", role: "img", "aria-label": label });
  const max = Math.max(1, ...values);
  chart.append(svg("line", { class: "axis", x1: 0, y1: 59, x2: 300, y2: 59 }));
  // The line spans the width from the first point on; it holds the last HISTORY points.
  const step = 300 / Math.max(1, values.length - 1);
  const points = values.map((v, i) => `${(i * step).toFixed(1)},${(58 - (v / max) * 56).toFixed(1)}`);
  // One point is no line yet: draw it level across the chart so the first figure shows.
  if (points.length === 1) points.push(`300,${points[0].split(",")[1]}`);
  if (points.length) chart.append(svg("polyline", { class: "spark", points: points.join(" ") }));
  return chart;
}

function bars(rows, label) {
  const height = Math.max(60, rows.length * 18);
  const chart = svg("svg", { viewBox: `0 0 300 ${height}`, role: "img", "aria-label": label });
  chart.style.height = `${height}px`;
  const max = Math.max(1, ...rows.map((r) => r.value));
  rows.forEach((row, i) => {
    chart.append(svg("rect", { class: "bar", x: 150, y: i * 18 + 3, height: 12, width: Math.max(1, (row.value / max) * 80) }));
    const name = svg("text", { class: "bar-label", x: 0, y: i * 18 + 13 });
    name.textContent = row.name;
    const value = svg("text", { class: "bar-label", x: 300, y: i * 18 + 13, "text-anchor": "end" });
    value.textContent = row.text;
    chart.append(name, value);
  });
  return chart;
}

function figure(id, title) {
  const value = el("div", { class: "value", id: `${id}-value` }, "…");
  const chart = el("div");
  const note = el("p", { class: "hint", id: `${id}-note` });
  return { node: el("section", { class: "card figure", "aria-labelledby": `${id}-title` }, el("h2", { id: `${id}-title` }, title), value, chart, note), value, chart, note };
}

function pipelineView(main) {
  const settings = el("p", { id: "pipeline-settings" }, "Loading…");
  const appended = figure("appended", "Events appended per second");
  const deliveries = figure("deliveries", "Fan-out deliveries per second");
  const letters = figure("dead-letters", "Dead letters");
  const lag = figure("lag", "Processor lag per shard (records)");
  const celebrities = el("ul", { id: "celebrities" });
  main.append(el("h1", {}, "Pipeline"), settings,
    el("div", { class: "figures" }, appended.node, deliveries.node, letters.node, lag.node),
    el("h2", {}, "Celebrities you follow"),
    el("p", { class: "hint" }, "Authors at or above the threshold are pulled at read time instead of pushed to every follower."),
    celebrities);
  const history = { events_appended: [], deliveries: [], stored: [] };
  let previous = null;

  function rate(name, answer) {
    const now = answer.counters[name];
    if (previous === null || now == null || previous.counters[name] == null) return null;
    const seconds = (answer.at_ms - previous.at_ms) / 1000;
    return seconds > 0 ? Math.max(0, (now - previous.counters[name]) / seconds) : null;
  }

  function show(fig, name, answer) {
    const perSecond = rate(name, answer);
    if (answer.counters[name] == null) {
      fig.value.textContent = "—";
      fig.note.textContent = `not exposed (processor metrics: ${answer.processor_metrics})`;
      return;
    }
    if (perSecond !== null) {
      history[name].push(perSecond);
      if (history[name].length > HISTORY) history[name].shift();
    }
    fig.value.textContent = perSecond === null ? "…" : perSecond.toFixed(1);
    fig.chart.replaceChildren(sparkline(history[name], `${fig.node.querySelector("h2").textContent}, last two minutes`));
    fig.note.textContent = `${Math.round(answer.counters[name])} in total`;
  }

  async function poll() {
    const answer = await api("GET", "/v1/pipeline");
    settings.textContent = `Strategy: ${answer.strategy} · celebrity threshold: ${plural(answer.celebrity_threshold, "follower")} · ${plural(answer.shards.length, "shard")}`;
    show(appended, "events_appended", answer);
    show(deliveries, "deliveries", answer);
    letters.value.textContent = `${answer.dead_letters_stored}${answer.dead_letters_capped ? "+" : ""}`;
    history.stored.push(answer.dead_letters_stored);
    if (history.stored.length > HISTORY) history.stored.shift();
    letters.chart.replaceChildren(sparkline(history.stored, "Dead letters in the store, last two minutes"));
    letters.note.textContent = answer.counters.dead_letters == null ? "in the dead-letter store"
      : `in the dead-letter store; ${Math.round(answer.counters.dead_letters)} sent since the processors started`;
    const total = answer.shards.reduce((sum, s) => sum + s.behind, 0);
    lag.value.textContent = `${total}${answer.shards.some((s) => s.behind_capped) ? "+" : ""}`;
    lag.chart.replaceChildren(bars(answer.shards.map((s) => ({ name: s.shard_id.length > 22 ? `…${s.shard_id.slice(-21)}` : s.shard_id, value: s.behind,
      text: `${s.behind}${s.behind_capped ? "+" : ""} · ${s.millis_behind} ms` })), "records behind, per shard"));
    lag.note.textContent = "records in the log not yet applied to the projections";
    previous = answer;
  }

  async function showCelebrities() {
    const me = session();
    if (!me) { celebrities.replaceChildren(el("li", { class: "hint" }, "Log in to see the celebrities you follow.")); return; }
    const page = await api("GET", `/v1/users/${encodeURIComponent(me.user_id)}/following?limit=200`);
    const users = await Promise.all(page.items.map((id) => profile(id).catch(() => null)));
    const famous = users.filter((u) => u && u.celebrity);
    celebrities.replaceChildren(...famous.map((u) => el("li", {}, userLink(u.user_id, u.handle), ` — ${plural(u.followers, "follower")}`)));
    if (!famous.length) celebrities.replaceChildren(el("li", { class: "hint" }, "None of the people you follow is a celebrity."));
  }

  const tick = () => poll().catch((e) => { settings.textContent = `The pipeline figures are unavailable: ${e.message}`; });
  tick();
  showCelebrities().catch(() => {});
  const timer = setInterval(() => { if (!document.hidden) tick(); }, POLL_MS);
  return () => clearInterval(timer);
}

// --- the router ------------------------------------------------------------------------------------

let cleanup = () => {};

function showWhoami() {
  const me = session();
  document.getElementById("whoami").textContent = me ? `@${me.handle}` : "";
  document.getElementById("logout").hidden = !me;
}

function route() {
  cleanup();
  const main = document.getElementById("main");
  main.replaceChildren();
  const hash = location.hash || "#/";
  const me = session();
  let name = "home";
  if (hash === "#/login") { name = "login"; cleanup = loginView(main); }
  else if (hash === "#/pipeline") { name = "pipeline"; cleanup = pipelineView(main); }
  else if (hash === "#/me" && me) { name = "me"; cleanup = userView(main, me.user_id); }
  else if (hash.startsWith("#/u/")) { name = "user"; cleanup = userView(main, decodeURIComponent(hash.slice(4))); }
  else { cleanup = homeView(main); }
  document.title = `fanline · ${name}`;
  for (const link of document.querySelectorAll("[data-nav]")) {
    if (link.dataset.nav === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("goto").addEventListener("submit", (event) => {
    event.preventDefault();
    const id = document.getElementById("goto-id").value.trim();
    if (id) location.hash = `#/u/${encodeURIComponent(id)}`;
    document.getElementById("goto-id").value = "";
  });
  document.getElementById("logout").addEventListener("click", () => { setSession(null); location.hash = "#/login"; });
  showWhoami();
  window.addEventListener("hashchange", route);
  route();
});
