// Real-browser test of the status page at `/`: Debian's chromium, headless, driven by playwright-core.
// Run by tests/realworld/status_page.sh, which starts the exporter and a controllable agent:
//   node status_page.mjs base=http://127.0.0.1:PORT control=http://127.0.0.1:PORT2 agent=NAME expect=a,b,c
// `control` answers POST /mode/down and /mode/up, which make agent NAME fail or pass its probes.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const args = Object.fromEntries(process.argv.slice(2).map((a) => a.split(/=(.*)/s).slice(0, 2)));
const base = (args.base || "").replace(/\/$/, "");
const { control, agent } = args;
const expected = (args.expect || "").split(",").filter(Boolean);
if (!base || !control || !agent || expected.length === 0) {
  console.error("usage: node status_page.mjs base=URL control=URL agent=NAME expect=a,b,c");
  process.exit(2);
}
const browserPath = process.env.CHROMIUM || "/usr/bin/chromium";
const LIMIT_MS = 2000; // the acceptance bound: DOM change within 2 s of the status event

let passed = 0, failed = 0;
function check(ok, what, detail = "") {
  if (ok) passed++; else failed++;
  console.log(`${ok ? "ok  " : "FAIL"} ${what}${detail ? ": " + detail : ""}`);
  return ok;
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function until(what, fn, ms) {
  const end = Date.now() + ms;
  for (;;) {
    const value = await fn().catch(() => undefined);
    if (value) return value;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(100);
  }
}
const api = async () => (await fetch(base + "/api/v1/agents")).json();
const statuses = (fleet) => Object.fromEntries(fleet.agents.map((a) => [a.name, a.status]));

// The event stream as a script sees it: resolves `next(pred)` with the arrival time of the first
// matching event. Its timestamps are the reference for the page's reaction time.
function subscribe() {
  const abort = new AbortController();
  const seen = [];
  const waiters = [];
  const ready = fetch(base + "/api/v1/events?probes=true", { signal: abort.signal }).then(async (res) => {
    if (!res.ok) throw new Error(`events: HTTP ${res.status}`);
    const decoder = new TextDecoder();
    let buffer = "";
    (async () => {
      for await (const chunk of res.body) {
        buffer += decoder.decode(chunk, { stream: true });
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const frame = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const event = /^event: ?(.*)$/m.exec(frame)?.[1];
          const data = frame.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart()).join("\n");
          if (!event) continue;
          const item = { at: Date.now(), event, data: JSON.parse(data) };
          seen.push(item);
          for (const w of waiters.splice(0)) if (!w(item)) waiters.push(w);
        }
      }
    })().catch(() => {});
  });
  const next = (pred, ms) => new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no matching event within ${ms} ms`)), ms);
    waiters.push((item) => (pred(item) ? (clearTimeout(timer), resolve(item), true) : false));
  });
  return { ready, next, close: () => abort.abort(), seen };
}

// Watches one row's data-status inside the page and records (by the same clock as the script,
// both run on this machine) when it first takes the wanted value.
async function watchRow(page, name, want) {
  await page.evaluate(([name, want]) => {
    if (window.__watch) window.__watch.disconnect();
    window.__seen = null;
    const check = () => {
      const row = document.querySelector(`[data-agent="${CSS.escape(name)}"]`);
      if (!window.__seen && row && row.dataset.status === want) window.__seen = Date.now();
    };
    // childList too: a resync may replace the row itself.
    window.__watch = new MutationObserver(check);
    window.__watch.observe(document.body, { subtree: true, childList: true, attributes: true, attributeFilter: ["data-status"] });
    check();
  }, [name, want]);
}

async function statusChange(page, name, mode, want) {
  const events = subscribe();
  await events.ready;
  await watchRow(page, name, want);
  // The probe event of the failing probe carries the new status too, and may come first: the
  // reference is whichever of the two reaches this script first.
  const first = events.next((e) => e.data.agent === name &&
    ((e.event === "status" && e.data.to === want) || (e.event === "probe" && e.data.status === want)), 15000);
  const status = events.next((e) => e.event === "status" && e.data.agent === name && e.data.to === want, 15000);
  const switched = Date.now();
  const res = await fetch(`${control}/mode/${mode}`, { method: "POST" });
  if (!res.ok) throw new Error(`control ${mode}: HTTP ${res.status}`);
  const [event, transition] = await Promise.all([first, status]);
  events.close();
  const shownAt = await until(`row ${name} to show ${want}`, () => page.evaluate(() => window.__seen), LIMIT_MS + 3000)
    .catch(() => null);
  const latency = shownAt ? shownAt - event.at : Infinity;
  check(latency <= LIMIT_MS, `${name} shows "${want}" within ${LIMIT_MS} ms of its status event`, shownAt
    ? `${latency} ms after the first ${event.event} event saying so (status event ${transition.at - switched} ms after the switch)`
    : "never shown");
}

async function main() {
  const profile = mkdtempSync(join(tmpdir(), "status-page-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: browserPath,
    headless: true,
    viewport: { width: 1280, height: 800 },
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      // Anything not on loopback (which Chromium never proxies) goes to a closed local port and fails.
      "--proxy-server=http://127.0.0.1:9",
    ],
  });
  const requests = [];
  const blocked = [];
  const pageErrors = [];
  context.on("request", (r) => requests.push(r.url()));
  await context.route((url) => url.hostname !== "127.0.0.1", (route) => {
    blocked.push(route.request().url());
    return route.abort("blockedbyclient");
  });
  try {
    const page = context.pages()[0] || (await context.newPage());
    page.on("request", (r) => requests.includes(r.url()) || requests.push(r.url()));
    page.on("pageerror", (e) => pageErrors.push(String(e)));
    page.on("console", (m) => m.type() === "error" && pageErrors.push(m.text()));

    // Let every agent get its first probe, so the statuses compared are settled ones.
    await until("every agent probed", async () => (await api()).agents.every((a) => a.status !== "unknown"), 15000);
    const response = await page.goto(base + "/");
    check(response.ok() && (response.headers()["content-type"] || "").startsWith("text/html"), "GET / answers the page",
      `${response.status()} ${response.headers()["content-type"]}`);
    await page.waitForSelector('#connection[data-state="live"]', { timeout: 5000 });
    check(true, "connection indicator turns live");

    const names = await page.$$eval("[data-agent]", (rows) => rows.map((r) => r.dataset.agent));
    check(JSON.stringify([...names].sort()) === JSON.stringify([...expected].sort()), "every configured agent is listed",
      names.join(", "));

    // The API and the page agree; both can move in between, so compare until they match.
    let last = "";
    const agree = await until("page statuses equal to the API's", async () => {
      const want = statuses(await api());
      const shown = await page.$$eval("[data-agent]", (rows) => Object.fromEntries(rows.map((r) => [r.dataset.agent, r.dataset.status])));
      last = JSON.stringify(shown);
      return JSON.stringify(shown, Object.keys(want).sort()) === JSON.stringify(want, Object.keys(want).sort()) && last;
    }, 5000).catch(() => null);
    check(!!agree, "statuses shown match /api/v1/agents", agree || last);

    const text = await page.innerText(`[data-agent="${agent}"]`);
    check(/ago/.test(text) && /%/.test(text) && /s\b/.test(text), "a row shows last probe time, latency and success ratio",
      text.replace(/\s+/g, " ").trim());

    await statusChange(page, agent, "down", "unhealthy");
    let error = "";
    const reason = await until("the failure reason", async () => {
      error = await page.textContent(`[data-agent="${agent}"] .error`);
      return /http_status/.test(error || "");
    }, LIMIT_MS).catch(() => false);
    check(reason, "the failing agent shows its failure reason", error);
    await statusChange(page, agent, "up", "healthy");

    // Filter: by name, by label value, then cleared.
    const visible = () => page.$$eval("[data-agent]", (rows) => rows.filter((r) => r.offsetParent !== null).map((r) => r.dataset.agent));
    await page.fill("#filter", agent);
    let shown = await visible();
    check(shown.length === 1 && shown[0] === agent, "filter by name hides the other agents", shown.join(", "));
    const fleet = await api();
    const other = fleet.agents.find((a) => a.name !== agent && Object.keys(a.labels).length);
    if (other) {
      const [key, value] = Object.entries(other.labels)[0];
      await page.fill("#filter", `${key}=${value}`);
      shown = await visible();
      const want = fleet.agents.filter((a) => a.labels[key] === value).map((a) => a.name);
      check(JSON.stringify(shown) === JSON.stringify(want), "filter by label matches its agents", shown.join(", "));
    }
    await page.fill("#filter", "no-such-agent-anywhere");
    check((await visible()).length === 0, "a filter matching nothing hides every agent");
    await page.fill("#filter", "");
    check((await visible()).length === expected.length, "clearing the filter shows every agent again");

    // A fleet view: problems first, then natural name order; a click on a status or type tile filters,
    // and the filter lives in the URL.
    await statusChange(page, agent, "down", "unhealthy");
    const order = await page.$$eval("[data-agent]", (rows) => rows.map((r) => [r.dataset.agent, r.dataset.status]));
    const natural = new Intl.Collator(undefined, { numeric: true }).compare;
    const healthyNames = order.filter(([, s]) => s === "healthy").map(([n]) => n);
    const rank = { unhealthy: 0, degraded: 1, unknown: 2, healthy: 3 };
    const ranks = order.map(([, s]) => rank[s]);
    check(order.some(([n]) => n === agent) && ranks.every((r, i) => i === 0 || ranks[i - 1] <= r),
      "problems are listed first (unhealthy, degraded, unknown, healthy)", order.map((o) => o.join(":")).join(", "));
    check(JSON.stringify(healthyNames) === JSON.stringify([...healthyNames].sort(natural)), "healthy agents follow in natural name order",
      healthyNames.join(", "));
    const unhealthy = (await api()).agents.filter((a) => a.status === "unhealthy").map((a) => a.name).sort().join(", ");
    await page.click('[data-count="unhealthy"]');
    shown = (await visible()).sort().join(", ");
    check(shown === unhealthy && shown.includes(agent) && /status=unhealthy/.test(page.url()),
      "a click on the unhealthy tile shows only unhealthy agents, in the URL", `${shown} at ${page.url()}`);
    await page.goto(page.url());
    await page.waitForSelector('#connection[data-state="live"]', { timeout: 5000 });
    shown = await until("the linked view", async () => { const v = (await visible()).sort().join(", "); return v === unhealthy && v; }, 5000)
      .catch(() => "");
    check(shown === unhealthy, "opening the link shows the same view", shown);
    await page.click('[data-count="unhealthy"]');
    const fleetNow = await api();
    const types = [...new Set(fleetNow.agents.map((a) => a.type))].sort();
    const tiles = await page.$$eval("#types [data-type]", (ts) => ts.map((t) => [t.dataset.type, Number(t.querySelector("b").textContent)]));
    const wantTiles = types.map((t) => [t, fleetNow.agents.filter((a) => a.type === t).length]);
    check(JSON.stringify(tiles) === JSON.stringify(wantTiles), "a tile per agent type with its count", JSON.stringify(tiles));
    await page.click(`#types [data-type="${types[0]}"]`);
    shown = await visible();
    const wantShown = fleetNow.agents.filter((a) => a.type === types[0]).map((a) => a.name).sort();
    check(JSON.stringify([...shown].sort()) === JSON.stringify(wantShown) && /type=/.test(page.url()), "a click on a type tile filters by type",
      shown.join(", "));
    await page.click(`#types [data-type="${types[0]}"]`);
    check((await visible()).length === expected.length, "a second click clears the type filter");
    await statusChange(page, agent, "up", "healthy");

    // The links go to this origin's metrics and API.
    const links = await page.$$eval("a[href]", (as) => as.map((a) => a.href));
    for (const path of ["/metrics", "/api/v1/agents"]) {
      const link = links.find((l) => new URL(l).pathname === path);
      const ok = link && (await fetch(link)).ok;
      check(!!ok, `the page links to ${path}`, link || "missing");
    }

    await page.screenshot({ path: "/tmp/status-page.png", fullPage: true });

    await page.setViewportSize({ width: 360, height: 740 });
    await sleep(300);
    const widths = await page.evaluate(() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]);
    check(widths[0] <= widths[1], "a phone-sized viewport has no horizontal scroll", `${widths[0]} <= ${widths[1]} px`);
    await page.screenshot({ path: "/tmp/status-page-phone.png", fullPage: true });
    console.log("screenshots: /tmp/status-page.png /tmp/status-page-phone.png");

    check(pageErrors.length === 0, "no script errors on the page", pageErrors.join(" | "));
    const foreign = requests.filter((u) => {
      const url = new URL(u);
      return url.protocol === "data:" ? false : url.hostname !== "127.0.0.1";
    });
    check(requests.length > 0 && foreign.length === 0, `every request (${requests.length}) went to 127.0.0.1`, foreign.join(", "));
    check(blocked.length === 0, "no request to another host was attempted", blocked.join(", "));
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  }
}

const watchdog = setTimeout(() => { console.log("FAIL the browser test took longer than 120 s"); process.exit(1); }, 120000);
main()
  .catch((e) => check(false, "browser test ran to its end", e.stack || String(e)))
  .finally(() => {
    clearTimeout(watchdog);
    console.log(`${passed} passed, ${failed} failed`);
    process.exit(failed ? 1 : 0);
  });
