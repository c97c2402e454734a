// The README's promise in a real browser: after `cargo run --release -- --config.file=config.example.yaml`
// the status page at / shows `exporter-self` healthy, with every agent of the API, and loads nothing
// from elsewhere. With screenshot=PATH it saves the picture at the top of the README.
// Run by tests/realworld/docs_snippets.py:  node readme_walkthrough.mjs base=http://127.0.0.1:10056 [screenshot=PATH]
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const args = Object.fromEntries(process.argv.slice(2).map((a) => a.split(/=(.*)/s).slice(0, 2)));
const base = (args.base || "").replace(/\/$/, "");
if (!base) {
  console.error("usage: node readme_walkthrough.mjs base=URL [screenshot=PATH]");
  process.exit(2);
}
const profile = mkdtempSync(join(tmpdir(), "readme-walkthrough-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  viewport: { width: 1280, height: 720 },
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--proxy-server=http://127.0.0.1:9"],
});
const offsite = [];
await context.route((url) => url.hostname !== "127.0.0.1" && url.hostname !== "localhost", (route) => {
  offsite.push(route.request().url());
  return route.abort("blockedbyclient");
});
let failed = false;
try {
  const page = context.pages()[0] || (await context.newPage());
  await page.goto(base + "/");
  // The README: "within 15 s the agent exporter-self is healthy" (the exporter's own start included).
  await page.waitForFunction(
    () => document.querySelector('[data-agent="exporter-self"]')?.dataset.status === "healthy",
    null, { timeout: 20000, polling: 100 });
  console.log("ok   the status page shows exporter-self healthy");
  // For the picture, a settled page: every agent past `unknown` (an agent with failure_threshold 2
  // and a 30 s interval needs two slots, so up to about 100 s). Not a failure when it takes longer;
  // the comparison below is.
  const total = (await (await fetch(base + "/api/v1/agents")).json()).agents.length;
  if (args.screenshot) await page.waitForFunction((n) => document.querySelectorAll("[data-agent]").length === n &&
    [...document.querySelectorAll("[data-agent]")].every((r) => r.dataset.status !== "unknown"),
    total, { timeout: 100000, polling: 250 }).catch(() => console.log("note some agents are still unknown"));
  // The page and the API agree on every agent's status (retried: a probe may land in between).
  let agree = false, last = "";
  for (let i = 0; i < 20 && !agree; i++) {
    const api = Object.fromEntries((await (await fetch(base + "/api/v1/agents")).json()).agents.map((a) => [a.name, a.status]));
    const shown = Object.fromEntries(await page.$$eval("[data-agent]", (rows) => rows.map((r) => [r.dataset.agent, r.dataset.status])));
    last = `page ${JSON.stringify(shown)}, API ${JSON.stringify(api)}`;
    agree = JSON.stringify(Object.entries(shown).sort()) === JSON.stringify(Object.entries(api).sort());
    if (!agree) await new Promise((r) => setTimeout(r, 250));
  }
  if (agree) {
    console.log(`ok   the page shows the ${total} agents of the API with their statuses`);
  } else {
    failed = true;
    console.log(`FAIL the page and the API disagree: ${last}`);
  }
  if (offsite.length) {
    failed = true;
    console.log(`FAIL the page asked for ${offsite.join(", ")}`);
  }
  if (args.screenshot) {
    await page.screenshot({ path: args.screenshot, fullPage: true });
    console.log(`ok   screenshot written to ${args.screenshot}`);
  }
} catch (e) {
  failed = true;
  console.log(`FAIL ${e.message}`);
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
