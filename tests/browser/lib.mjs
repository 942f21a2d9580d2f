// Shared helpers of the web UI's browser tests (tests/it/browser_*.rs run these scripts).
//
// Environment (set by the Rust side): RTCONFIG_URL (the admin's base URL), RTCONFIG_USER /
// RTCONFIG_PASSWORD (an editor), and per script more (see each script's header).
// Every helper throws on failure; `main(fn)` prints the error and exits 1, so the Rust test sees
// the exit code and the message on stderr.
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
export const repo = join(here, "..", "..");
export const screenshots = join(repo, "target", "ui-screenshots");
const axeSource = readFileSync(join(here, "node_modules", "axe-core", "axe.min.js"), "utf8");

export const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set (the Rust test sets it)`);
  return v;
};
export const base = () => env("RTCONFIG_URL");

/** Debian's chromium (no browser download), headless. */
export async function launch() {
  const executablePath = process.env.CHROMIUM || execFileSync("sh", ["-c", "command -v chromium"]).toString().trim();
  return chromium.launch({
    executablePath,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-dev-shm-usage"],
  });
}

/** A fresh context (its own cookies) with a page; `colorScheme` "light" or "dark". */
export async function newPage(browser, opts = {}) {
  const context = await browser.newContext({
    baseURL: base(),
    viewport: opts.viewport || { width: 1200, height: 900 },
    colorScheme: opts.colorScheme || "light",
  });
  const page = await context.newPage();
  page.setDefaultTimeout(10000);
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => {
    // A CSP violation is a bug of ours: the UI has no inline script or style.
    if (m.type() === "error" && /Content Security Policy/i.test(m.text())) errors.push(m.text());
  });
  page.jsErrors = errors;
  return page;
}

/** Signs in through the form: the inputs labelled "Username" and "Password", button "Sign in". */
export async function signIn(page, user = env("RTCONFIG_USER"), password = env("RTCONFIG_PASSWORD")) {
  await page.goto("/");
  await page.getByLabel("Username").fill(user);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL(/\/namespaces/);
}

/** axe-core on the current page: throws on any serious or critical violation. */
export async function axeCheck(page, label) {
  // Evaluated through the devtools protocol, which the page's CSP (no inline script) allows.
  if (!(await page.evaluate(() => typeof window.axe !== "undefined"))) await page.evaluate(axeSource);
  const result = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const r = await axe.run(document, { resultTypes: ["violations"] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map((n) => n.target.join(" ")) }));
  });
  const bad = result.filter((v) => v.impact === "serious" || v.impact === "critical");
  if (bad.length) throw new Error(`axe on ${label}: ${JSON.stringify(bad, null, 1)}`);
  return result;
}

/** A full-page screenshot to target/ui-screenshots/<name>.png. */
export async function screenshot(page, name) {
  mkdirSync(screenshots, { recursive: true });
  await page.screenshot({ path: join(screenshots, `${name}.png`), fullPage: true });
}

/** Throws with `message` unless `cond`. */
export function check(cond, message) {
  if (!cond) throw new Error(message);
}

/** No page error and no CSP violation happened on `page`. */
export function noJsErrors(page) {
  check(page.jsErrors.length === 0, `errors in the page: ${page.jsErrors.join("; ")}`);
}

/** Runs `fn(browser)`, closes the browser, exits 0 or prints the error and exits 1. */
export async function main(fn) {
  let browser;
  try {
    browser = await launch();
    await fn(browser);
    console.log("ok");
  } catch (e) {
    console.error(e && e.stack ? e.stack : String(e));
    process.exitCode = 1;
  } finally {
    if (browser) await browser.close().catch(() => {});
  }
}
