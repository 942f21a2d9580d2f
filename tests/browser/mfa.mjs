// Second-factor enrolment at sign-in (on `rtconfig dev` with auth.require_mfa_for_admins, signed
// in as RTCONFIG_USER, a global admin without a second factor): the password leads to
// /signin/mfa, which shows the key; a wrong code gives an announced error with the same key; the
// right code (TOTP from the shown key: RFC 6238, SHA-1, 30 s, 6 digits) shows the recovery codes
// once; "Continue" lands signed in. axe-core on every state; screenshots mfa, mfa-error, mfa-done.
import { createHmac } from "node:crypto";
import { main, newPage, axeCheck, screenshot, check, noJsErrors, env } from "./lib.mjs";

/** RFC 4648 base32 (no padding needed) to bytes. */
function base32(text) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = "";
  for (const ch of text.replace(/[\s=]/g, "").toUpperCase()) {
    const v = alphabet.indexOf(ch);
    if (v < 0) throw new Error(`not base32: ${ch}`);
    bits += v.toString(2).padStart(5, "0");
  }
  const out = [];
  for (let i = 0; i + 8 <= bits.length; i += 8) out.push(parseInt(bits.slice(i, i + 8), 2));
  return Buffer.from(out);
}

/** The TOTP code of `secret` (base32) now: HMAC-SHA-1 of the 30 s counter, 6 digits. */
function totp(secret, now = Date.now()) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(now / 1000 / 30)));
  const mac = createHmac("sha1", base32(secret)).update(counter).digest();
  const off = mac[mac.length - 1] & 0x0f;
  const n = (mac.readUInt32BE(off) & 0x7fffffff) % 1_000_000;
  return String(n).padStart(6, "0");
}

await main(async (browser) => {
  const page = await newPage(browser);
  await page.goto("/");
  await page.getByLabel("Username").fill(env("RTCONFIG_USER"));
  await page.getByLabel("Password").fill(env("RTCONFIG_PASSWORD"));
  await page.getByLabel("Password").press("Enter");
  await page.waitForURL(/\/signin\/mfa$/);
  await page.getByRole("heading", { level: 1, name: /Set up a second factor/ }).waitFor();
  const secret = (await page.locator("#totp-secret").innerText()).trim();
  check(/^[A-Z2-7]{16,}$/.test(secret), `the key is shown: ${secret}`);
  const app = await page.getByRole("link", { name: "Open in the authenticator app" }).getAttribute("href");
  check(app.startsWith(`otpauth://totp/rtconfig:${env("RTCONFIG_USER")}?secret=${secret}`), `the app link: ${app}`);
  check(await page.getByLabel("Authentication code").evaluate((e) => e === document.activeElement), "the code field has the focus");
  await axeCheck(page, "mfa");
  await screenshot(page, "mfa");

  // A wrong code: announced, the same key again, nothing else reachable yet.
  const wrong = totp(secret) === "000000" ? "111111" : "000000";
  await page.keyboard.type(wrong);
  await page.keyboard.press("Enter");
  const alert = page.getByRole("alert");
  await alert.waitFor();
  check((await alert.innerText()).trim().length > 0, "the error says why");
  check((await page.locator("#totp-secret").innerText()).trim() === secret, "the same key, not a new one");
  await axeCheck(page, "mfa-error");
  await screenshot(page, "mfa-error");
  const blocked = await page.evaluate(async () => (await fetch("/namespaces", { redirect: "manual" })).status);
  check(blocked !== 200, `no namespaces before the second factor, got ${blocked}`);

  // The right code: the recovery codes, once.
  await page.getByLabel("Authentication code").fill(totp(secret));
  await page.getByRole("button", { name: "Confirm" }).click();
  await page.getByRole("status").filter({ hasText: "The second factor is set up" }).waitFor();
  const codes = await page.locator("#recovery-codes li").allInnerTexts();
  check(codes.length === 10 && new Set(codes).size === 10, `ten distinct recovery codes: ${codes.join(", ")}`);
  await axeCheck(page, "mfa-done");
  await screenshot(page, "mfa-done");
  await page.getByRole("link", { name: "Continue" }).click();
  await page.waitForURL(/\/namespaces$/);
  check((await page.locator("main").innerText()).includes("demo"), "signed in: the namespaces list shows demo");
  await axeCheck(page, "namespaces after mfa");
  await page.goto("/signin/mfa");
  check((await page.locator("#recovery-codes").count()) === 0, "the recovery codes are not shown again");
  noJsErrors(page);
});
