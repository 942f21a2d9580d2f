// The fleet page and the namespaces list's fleet columns (on `rtconfig dev`, whose fleet is the
// in-process sidecar `dev-local`): the columns, the page's summary, sidecars and last change;
// a commit made meanwhile appears on the open page without a reload (the `fleet` event).
import { main, newPage, signIn, axeCheck, screenshot, check, noJsErrors } from "./lib.mjs";

await main(async (browser) => {
  const page = await newPage(browser);
  await signIn(page);

  // The namespaces list: the fleet columns.
  await page.getByRole("columnheader", { name: "Sidecars in sync" }).waitFor();
  for (const h of ["Stale", "Old version", "Schema drift"]) {
    await page.getByRole("columnheader", { name: h }).waitFor();
  }
  const row = page.locator("#namespaces tr[data-namespace=demo]");
  check((await row.innerText()).includes("1 of 1"), `fleet cells: ${await row.innerText()}`);

  // The fleet page, through the nav.
  await page.getByRole("link", { name: "Fleet" }).click();
  await page.waitForURL(/\/namespaces\/demo\/fleet$/);
  await page.getByRole("heading", { name: "Fleet · demo" }).waitFor();
  const sidecar = page.locator("#sidecars tr[data-sidecar=dev-local]");
  await sidecar.waitFor();
  check((await sidecar.getAttribute("data-state")) === "in sync", `state: ${await sidecar.innerText()}`);
  check((await page.locator("#fleet-summary [data-field=in_sync]").innerText()) === "1", "1 in sync");
  await axeCheck(page, "fleet");

  // A commit while the page is open: the last change updates live, with its lag.
  const version = await page.evaluate(async () => {
    const r = await fetch("/api/v1/namespaces/demo/configs", {
      method: "PATCH",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": document.body.dataset.csrf },
      body: JSON.stringify({ changes: { SITE_NAME: "fleet page live" }, comment: "fleet test" }),
    });
    if (!r.ok) throw new Error(`PATCH ${r.status}: ${await r.text()}`);
    return (await r.json()).version;
  });
  const last = page.locator("#propagation");
  await last.getByText(`Version ${version} by alice`).waitFor({ timeout: 8000 });
  const text = await last.innerText();
  check(/reached 1 of 1 sidecar/.test(text), `propagation: ${text}`);
  check(/propagation lag \d/.test(text), `lag: ${text}`);
  await axeCheck(page, "fleet after a commit");
  await screenshot(page, "fleet");

  // Dark mode and a phone's width.
  const phone = await newPage(browser, { viewport: { width: 390, height: 844 }, colorScheme: "dark" });
  await signIn(phone);
  await phone.goto("/fleet");
  await phone.waitForURL(/\/namespaces\/demo\/fleet$/);
  await phone.locator("#sidecars").waitFor();
  await axeCheck(phone, "fleet, dark, phone");
  await screenshot(phone, "fleet-phone-dark");
  noJsErrors(page);
  noJsErrors(phone);
});
