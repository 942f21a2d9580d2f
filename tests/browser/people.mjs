// The users and API tokens pages (on `rtconfig dev`, signed in as RTCONFIG_USER, a global
// admin): create a user through the form, grant a role on the user's page, create a token (its
// value shown once, with a copy button), revoke it after the confirm step; the pages reached
// by keyboard from the nav; axe-core on each; screenshots users, user, tokens, token-created.
import { main, newPage, signIn, axeCheck, screenshot, check, noJsErrors, env } from "./lib.mjs";

await main(async (browser) => {
  const page = await newPage(browser);
  await signIn(page);

  // Keyboard: Tab through the header to the nav's "Users" link, Enter.
  let reached = false;
  for (let i = 0; i < 12 && !reached; i++) {
    await page.keyboard.press("Tab");
    reached = await page.evaluate(() => document.activeElement && document.activeElement.getAttribute("href") === "/users");
  }
  check(reached, "the Users link is reachable by Tab");
  await page.keyboard.press("Enter");
  await page.waitForURL(/\/users$/);
  await page.getByRole("heading", { name: "Users", level: 1 }).waitFor();
  check((await page.title()) === "Users · rtconfig", `title: ${await page.title()}`);
  await axeCheck(page, "users");

  // Create: a weak password first (the error is announced next to the field), then a good one.
  await page.getByLabel("User name").fill("carol");
  await page.getByLabel("Initial password").fill("carol");
  await page.getByRole("button", { name: "Create user" }).click();
  await page.locator("#password-error[role=alert]").waitFor();
  await axeCheck(page, "users with an error");
  await page.getByLabel("Initial password").fill("a long enough passphrase for carol");
  await page.getByLabel("demo").first().selectOption("viewer");
  await page.getByRole("button", { name: "Create user" }).click();
  await page.waitForURL(/\/users\/carol\?done=created$/);
  await page.getByText("User created.").waitFor();
  check((await page.locator("#user-facts").innerText()).includes("viewer:demo"), "carol is viewer:demo");
  await axeCheck(page, "user");

  // Grant editor on demo (the admin's password asked again).
  await page.locator("#roles-role\\.ns\\.demo").selectOption("editor");
  await page.locator("#roles-admin-password").fill(env("RTCONFIG_PASSWORD"));
  await page.getByRole("button", { name: "Save roles" }).click();
  await page.waitForURL(/done=roles$/);
  check((await page.locator("#user-facts").innerText()).includes("editor:demo"), "carol is editor:demo");
  await screenshot(page, "user");
  await page.goto("/users");
  await page.locator("#users tr[data-user=carol]").waitFor();
  await screenshot(page, "users");

  // Tokens: create one; the value shown once, with a copy button (the script shows it).
  await page.getByRole("link", { name: "Tokens" }).click();
  await page.waitForURL(/\/tokens$/);
  await page.getByRole("heading", { name: "API tokens", level: 1 }).waitFor();
  await axeCheck(page, "tokens");
  await page.getByLabel("Name", { exact: true }).fill("ci-deploy");
  await page.getByLabel("Role").selectOption("viewer");
  await page.getByLabel("demo").check();
  await page.getByLabel("Expires after").selectOption("30d");
  await page.getByLabel("Your password").fill(env("RTCONFIG_PASSWORD"));
  await page.getByRole("button", { name: "Create token" }).click();
  await page.getByRole("heading", { name: /Token created/ }).waitFor();
  const secret = await page.getByLabel("Token", { exact: true }).inputValue();
  check(secret.length > 20, "the token is on the page");
  await page.getByRole("button", { name: "Copy token" }).waitFor();
  await axeCheck(page, "token created");
  await screenshot(page, "token-created");
  const works = await page.evaluate(async (t) => (await fetch("/api/v1/namespaces/demo/configs", { headers: { Authorization: `Bearer ${t}`, Cookie: "" }, credentials: "omit" })).status, secret);
  check(works === 200, `the token works as a Bearer: ${works}`);

  // The list never shows it again; revoke through the confirm page.
  await page.getByRole("link", { name: "Done" }).click();
  await page.waitForURL(/\/tokens$/);
  check(!(await page.content()).includes(secret), "the token is not in the list");
  await screenshot(page, "tokens");
  page.once("dialog", (d) => d.accept());
  await page.getByRole("link", { name: "Revoke ci-deploy" }).click();
  await page.getByRole("heading", { name: "Revoke ci-deploy?" }).waitFor();
  await axeCheck(page, "revoke a token");
  await page.getByRole("button", { name: "Confirm revoke" }).click();
  await page.waitForURL(/\/tokens\?done=revoked$/);
  await page.getByText("Token revoked").waitFor();
  const refused = await page.evaluate(async (t) => (await fetch("/api/v1/namespaces/demo/configs", { headers: { Authorization: `Bearer ${t}` }, credentials: "omit" })).status, secret);
  check(refused === 401, `revoked: ${refused}`);

  // The palette lists the pages.
  await page.keyboard.press("Control+k");
  await page.locator("#palette-input").fill("Users");
  check((await page.locator(".palette li").allInnerTexts()).some((t) => t.includes("Users")), "the palette offers Users");
  await page.keyboard.press("Escape");
  noJsErrors(page);
});
