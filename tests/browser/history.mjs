// The history pages in a real browser: history shows the changeset with the old default values,
// filters make a URL, "Roll back" previews exactly what it will change, "Confirm roll back" with a
// Comment writes a new changeset; compare; a viewer sees no Roll back button and a forged POST is
// refused. axe-core on every page; screenshots history, history-filtered, rollback, changeset,
// compare, history-dark, history-phone.
// A commit between the preview and the confirmation shows the new preview instead of writing.
// Env: RTCONFIG_URL, RTCONFIG_USER / RTCONFIG_PASSWORD (an editor of demo), VIEWER (a viewer),
// DEV_TOKEN (an admin API token, for the concurrent commit).
import { main, newPage, signIn, axeCheck, screenshot, check, noJsErrors, env } from "./lib.mjs";

await main(async (browser) => {
  const page = await newPage(browser);
  await signIn(page);

  // History, newest first, with the old values in effect: the defaults, marked "default".
  await page.goto("/namespaces/demo/history");
  const rows = page.locator("#history tbody tr");
  check((await rows.count()) === 2, `two changesets, got ${await rows.count()}`);
  check((await rows.nth(0).getAttribute("data-version")) === "2", "newest first");
  const v1 = page.locator('#history tr[data-version="1"]');
  const v1text = await v1.innerText();
  check(/SITE_NAME: Config Manager default\s*→?\s*(to)?\s*Acme Shop/.test(v1text.replace(/\s+/g, " ")), `v1 shows the old default: ${v1text}`);
  check((await page.getByRole("button", { name: "Roll back" }).count()) === 2, "a Roll back button per row");
  await axeCheck(page, "history");
  await screenshot(page, "history");

  // Filters: a GET form, so the filtered view is a URL.
  await page.getByLabel("Comment contains").fill("pink");
  await page.getByRole("button", { name: "Filter" }).click();
  await page.waitForURL(/q=pink/);
  check((await rows.count()) === 1 && (await rows.first().getAttribute("data-version")) === "2", "q=pink keeps v2 only");
  check((await page.title()).includes("filtered"), `title says filtered: ${await page.title()}`);
  await axeCheck(page, "history-filtered");
  await screenshot(page, "history-filtered");
  await page.goto("/namespaces/demo/history?key=ITEMS_PER_PAGE&since=2020-01-01");
  check((await rows.count()) === 1 && (await rows.first().getAttribute("data-version")) === "1", "key filter by URL");
  await page.goto("/namespaces/demo/history?since=nonsense");
  check((await page.getByRole("alert").innerText()).startsWith("since:"), "a bad filter is named");

  // Roll back v2: the preview of to_version = 1, exactly what it will change.
  await page.goto("/namespaces/demo/history");
  await page.locator('#history tr[data-version="2"]').getByRole("button", { name: "Roll back" }).click();
  await page.waitForURL(/\/rollback\?to_version=1/);
  const preview = page.locator("table.diff tbody tr");
  check((await preview.count()) === 1, `one key changes, got ${await preview.count()}`);
  const line = (await preview.first().innerText()).replace(/\s+/g, " ");
  check(/THEME_COLOR #e91e63 #4a6cf7 default/.test(line), `preview THEME_COLOR → default: ${line}`);
  await axeCheck(page, "rollback");
  await screenshot(page, "rollback");
  // Someone commits meanwhile (another key): confirming shows the rollback as it stands now
  // instead of writing something other than what was previewed.
  const other = await page.request.patch("/api/v1/namespaces/demo/configs", {
    headers: { Authorization: `Bearer ${env("DEV_TOKEN")}` },
    data: { changes: { WELCOME_MESSAGE: "Hello!" }, comment: "meanwhile" },
  });
  check(other.ok(), `the concurrent commit: ${other.status()}`);
  await page.getByLabel("Comment").fill("undo pink");
  await page.getByRole("button", { name: "Confirm roll back" }).click();
  check((await page.getByRole("alert").innerText()).includes("Someone committed"), "a commit since the preview is shown");
  check((await page.locator('input[name="expected_version"]').inputValue()) === "3", "the new preview is at version 3");
  check((await page.getByLabel("Comment").inputValue()) === "undo pink", "the comment is kept");
  // Back to version 1 now also undoes the commit made meanwhile: the new preview says so.
  const again = (await page.locator("main").innerText()).replace(/\s+/g, " ");
  check((await preview.count()) === 2 && again.includes("WELCOME_MESSAGE Hello!") && again.includes("and every later one"), `the new preview: ${again}`);
  await page.getByRole("button", { name: "Confirm roll back" }).click();
  await page.waitForURL(/\/changesets\/4\?rolled_back=1/);
  check((await page.getByRole("status").filter({ hasText: "Rolled back" }).count()) === 1, "the new changeset is shown");
  check((await page.locator("main").innerText()).includes("undo pink"), "with its comment");
  await axeCheck(page, "changeset");
  await screenshot(page, "changeset");

  // Compare any two versions.
  await page.goto("/namespaces/demo/compare?from=0&to=4");
  const cmp = (await page.locator("table.diff").innerText()).replace(/\s+/g, " ");
  check(cmp.includes("SITE_NAME Config Manager default Acme Shop") && !cmp.includes("WELCOME_MESSAGE") && !cmp.includes("THEME_COLOR"), `compare 0→4: ${cmp}`);
  await axeCheck(page, "compare");
  await screenshot(page, "compare");
  noJsErrors(page);

  // Dark mode and a phone's width.
  const dark = await newPage(browser, { colorScheme: "dark" });
  await signIn(dark);
  await dark.goto("/namespaces/demo/history");
  await axeCheck(dark, "history-dark");
  await screenshot(dark, "history-dark");
  const phone = await newPage(browser, { viewport: { width: 390, height: 844 } });
  await signIn(phone);
  await phone.goto("/namespaces/demo/history");
  await axeCheck(phone, "history-phone");
  await screenshot(phone, "history-phone");

  // A viewer: no Roll back buttons, the preview is refused, and a forged POST too.
  const viewer = await newPage(browser);
  await signIn(viewer, env("VIEWER"));
  await viewer.goto("/namespaces/demo/history");
  check((await viewer.locator("#history tbody tr").count()) === 4, "the viewer sees the history");
  check((await viewer.getByRole("button", { name: "Roll back" }).count()) === 0, "no Roll back for a viewer");
  const refused = await viewer.goto("/namespaces/demo/rollback?to_version=0");
  check(refused.status() === 403, `the preview is 403 for a viewer, got ${refused.status()}`);
  await viewer.goto("/namespaces/demo/history");
  const csrf = await viewer.locator("body").getAttribute("data-csrf");
  // Posted from the viewer's own page (their session cookie, their CSRF token, this origin).
  const forged = await viewer.evaluate(async (token) => {
    const body = new URLSearchParams({ csrf_token: token, to_version: "0", comment: "forged" });
    const r = await fetch("/namespaces/demo/rollback", { method: "POST", body, redirect: "manual" });
    return r.status;
  }, csrf);
  check(forged === 403, `a forged rollback POST is refused, got ${forged}`);
  noJsErrors(viewer);
});
