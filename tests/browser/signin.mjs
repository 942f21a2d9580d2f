// Sign-in and the namespaces list: anonymous → sign-in form; a wrong password is announced;
// sign in → the namespaces list; a deep link redirects back after sign-in; sign out.
import { main, newPage, signIn, axeCheck, screenshot, check, noJsErrors, env } from "./lib.mjs";

await main(async (browser) => {
  const page = await newPage(browser);
  await page.goto("/");
  check((await page.title()).startsWith("Sign in"), `title ${await page.title()}`);
  await axeCheck(page, "sign-in");
  await screenshot(page, "signin");

  // A wrong password: an alert, still on the form, the username kept.
  await page.getByLabel("Username").fill(env("RTCONFIG_USER"));
  await page.getByLabel("Password").fill("not the password at all");
  await page.getByRole("button", { name: "Sign in" }).click();
  const alert = page.getByRole("alert");
  await alert.waitFor();
  check(/wrong username or password/i.test(await alert.innerText()), `alert: ${await alert.innerText()}`);
  check((await page.getByLabel("Username").inputValue()) === env("RTCONFIG_USER"), "username kept");
  await axeCheck(page, "sign-in with an error");

  // Sign in: the namespaces list.
  await signIn(page);
  await page.getByRole("heading", { name: "Namespaces" }).waitFor();
  const row = page.locator("#namespaces tr[data-namespace=demo]");
  await row.waitFor();
  check((await row.innerText()).includes("demo"), "the demo namespace is listed");
  await axeCheck(page, "namespaces");
  await screenshot(page, "namespaces");
  noJsErrors(page);

  // Sign out (a POST form with the CSRF token), then a deep link needs sign-in again and
  // comes back to where it pointed.
  await page.locator("details.user-menu summary").click();
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByText("You are signed out.").waitFor();
  await page.goto("/namespaces");
  check(new URL(page.url()).pathname === "/signin", `after sign-out: ${page.url()}`);
  check(new URL(page.url()).searchParams.get("next") === "/namespaces", `next: ${page.url()}`);
  await page.getByLabel("Username").fill(env("RTCONFIG_USER"));
  await page.getByLabel("Password").fill(env("RTCONFIG_PASSWORD"));
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL(/\/namespaces$/);
  noJsErrors(page);
});
