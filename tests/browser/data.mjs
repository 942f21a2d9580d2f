// The data pages (on `rtconfig dev`, signed in as RTCONFIG_USER, a global admin): "Download export"
// gives the namespace's JSON document; pasted into /namespaces/demo/import with one value changed,
// "Preview import" shows the old → new value and writes nothing; Comment + "Apply import" lands on
// the changeset page with the comment. Then /audit: the filter form narrows the rows and the URL
// carries the filter. axe-core on every page state; screenshots import, import-preview, audit.
import { readFileSync } from "node:fs";
import { main, newPage, signIn, axeCheck, screenshot, check, noJsErrors, env } from "./lib.mjs";

const norm = (s) => s.replace(/\s+/g, " ").trim();
/** The export as the signed-in page's own fetch gets it. */
const exported = (page) => page.evaluate(async () => {
  const r = await fetch("/namespaces/demo/export");
  const t = await r.text();
  if (!r.ok) throw new Error(`export ${r.status}: ${t.slice(0, 200)}`);
  return JSON.parse(t);
});

await main(async (browser) => {
  const page = await newPage(browser);
  // A refused sign-in first, so the audit log holds more than one kind of event.
  await page.goto("/");
  await page.getByLabel("Username").fill(env("RTCONFIG_USER"));
  await page.getByLabel("Password").fill("not the password at all");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("alert").waitFor();
  await signIn(page);

  // The configs page links to the export and the import.
  await page.goto("/namespaces/demo");
  const [download] = await Promise.all([
    page.waitForEvent("download"),
    page.getByRole("link", { name: "Download export" }).first().click(),
  ]);
  const doc = JSON.parse(readFileSync(await download.path(), "utf8"));
  // Nothing committed yet: the export names the namespace and version 0, no values set.
  check(doc && doc.namespace === "demo" && doc.version === 0 && typeof doc.values === "object", `the export: ${JSON.stringify(doc)}`);
  await page.getByRole("link", { name: "Import" }).click();
  await page.waitForURL(/\/namespaces\/demo\/import$/);
  await page.getByRole("heading", { level: 1 }).waitFor();
  await axeCheck(page, "import");
  await screenshot(page, "import");

  // Keyboard: focus the document, type it, Tab to "Preview import", Enter.
  doc.values.SITE_NAME = "Imported Shop";
  await page.getByLabel("Export document").focus();
  await page.keyboard.insertText(JSON.stringify(doc, null, 2));
  await page.keyboard.press("Tab");
  check((await page.evaluate(() => document.activeElement && document.activeElement.textContent.trim())) === "Preview import", "Tab reaches Preview import");
  await page.keyboard.press("Enter");
  const rows = page.locator("#diff tbody tr");
  await rows.first().waitFor();
  check((await rows.count()) === 1, `one key changes, got ${await rows.count()}`);
  const line = norm(await rows.first().innerText());
  const oldCell = norm(await rows.first().locator("td.old").innerText());
  const newCell = norm(await rows.first().locator("td.new").innerText());
  check(line.startsWith("SITE_NAME") && /default$/.test(oldCell) && oldCell.length > "default".length && newCell === "Imported Shop", `the diff shows old (the default) → new: ${line}`);
  check(norm(await page.locator("main").innerText()).includes("Nothing has been written yet"), "the preview says nothing is written");
  check((await exported(page)).values.SITE_NAME === undefined, "the preview wrote nothing");
  await axeCheck(page, "import-preview");
  await screenshot(page, "import-preview");

  // Apply with a comment: the changeset page shows it.
  await page.getByLabel("Comment").fill("import from the export");
  await page.getByRole("button", { name: "Apply import" }).click();
  await page.waitForURL(/\/namespaces\/demo\/changesets\/\d+/);
  const cs = norm(await page.locator("main").innerText());
  check(cs.includes("import from the export") && cs.includes("Imported Shop"), `the changeset shows the comment and value: ${cs}`);
  await axeCheck(page, "import-changeset");
  check((await exported(page)).values.SITE_NAME === "Imported Shop", "the import is in effect");

  // The audit log: all events, then filtered by one action through the form.
  await page.goto("/audit");
  const audit = page.locator("#audit tbody tr");
  await audit.first().waitFor();
  const total = await audit.count();
  const actions = await page.locator("#audit tbody tr td:nth-child(3) code").allInnerTexts();
  const kinds = [...new Set(actions)];
  check(kinds.length >= 2, `more than one kind of event: ${kinds.join(", ")}`);
  await axeCheck(page, "audit");
  await screenshot(page, "audit");
  const pick = kinds.find((k) => actions.filter((a) => a === k).length < total);
  await page.getByLabel("Action").fill(pick);
  await page.getByLabel("Action").press("Enter");
  await page.waitForURL((u) => u.searchParams.get("action") === pick);
  const filtered = await page.locator("#audit tbody tr td:nth-child(3) code").allInnerTexts();
  check(filtered.length > 0 && filtered.length < total && filtered.every((a) => a === pick), `action=${pick} narrows ${total} rows to ${filtered.join(", ")}`);
  check((await page.getByRole("link", { name: "Clear filters" }).count()) === 1, "a Clear filters link");
  await axeCheck(page, "audit-filtered");
  await screenshot(page, "audit-filtered");
  // A filter by URL that matches nothing says so.
  await page.goto("/audit?actor=nobody-at-all");
  check(norm(await page.locator("main").innerText()).includes("No event matches these filters."), "an empty filter result is named");
  await axeCheck(page, "audit-empty");
  noJsErrors(page);
});
