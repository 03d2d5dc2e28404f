// Drives the web page in Debian's Chromium (headless) with playwright-core,
// for tests/integration/test_web.py.  One JSON object per line on stdout:
//   node drive.mjs tenant URL TOKEN
//     -> {"sections": [...slugs], "rows": [[rollout, status]...], "text": "...", "errors": [...]}
//   node drive.mjs refused URL TOKEN
//     -> {"status": "...", "signin_visible": true, "sections": 0}
//   node drive.mjs platform URL TOKEN ROLLOUT
//     -> {"phase": "loaded", "rollout_state", "waves": {index: state}, "pending_approvals": [...]}
//        then waits for a line "go" on stdin (the test starts the rollout),
//     -> {"phase": "passed", ...} once wave 1 shows "passed" without a reload,
//        {"phase": "timeout", ...} after 120 s, and finally {"errors": [...]}.
import { createRequire } from "node:module";
import readline from "node:readline";

// playwright-core lives with the other test tools (tests/tools/node_modules,
// or WS_NODE_TOOLS): an ES module import would not look there.
const tools = process.env.WS_NODE_TOOLS || new URL("../tools/node_modules/", import.meta.url).pathname;
const { chromium } = createRequire(tools.replace(/\/?$/, "/"))("playwright-core");

const [mode, url, token, rollout] = process.argv.slice(2);
const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const errors = [];
try {
  const page = await browser.newPage();
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(url);
  await page.fill("#token", token);
  await page.click("#signin button[type=submit]");

  if (mode === "refused") {
    await page.waitForFunction(() => document.getElementById("status").textContent !== "", null, { timeout: 30000 });
    out({
      status: await page.innerText("#status"),
      signin_visible: await page.isVisible("#signin"),
      sections: await page.$$eval("section", (s) => s.length),
    });
  } else if (mode === "tenant") {
    await page.waitForSelector("section[data-tenant]", { timeout: 30000 });
    await page.waitForTimeout(300);
    out({
      sections: await page.$$eval("section[data-tenant]", (s) => s.map((e) => e.dataset.tenant)),
      rows: await page.$$eval("tr[data-rollout]", (r) => r.map((e) => [Number(e.dataset.rollout), e.dataset.status])),
      next: await page.$$eval("tr.next", (r) => r.map((e) => Number(e.dataset.rollout))),
      text: await page.innerText("body"),
      who: await page.innerText("#who-text"),
    });
  } else {
    const sel = `section[data-rollout="${rollout}"]`;
    await page.waitForSelector(sel, { timeout: 30000 });
    const snap = async (phase) => ({
      phase,
      rollout_state: await page.getAttribute(sel, "data-state"),
      waves: Object.fromEntries(await page.$$eval(`${sel} .wave`, (w) => w.map((e) => [e.dataset.wave, e.dataset.state]))),
      pending_approvals: await page.$$eval(`${sel} [data-pending-approvals]`, (w) => w.map((e) => Number(e.dataset.pendingApprovals))),
      live: await page.getAttribute("#live", "data-live"),
    });
    out(await snap("loaded"));
    const rl = readline.createInterface({ input: process.stdin });
    for await (const line of rl) if (line.trim() === "go") break;
    rl.close();
    try {
      await page.waitForSelector(`${sel} .wave[data-wave="1"][data-state="passed"]`, { timeout: 120000 });
      out(await snap("passed"));
    } catch (e) {
      out(await snap("timeout"));
    }
  }
} finally {
  out({ errors });
  await browser.close();
}
