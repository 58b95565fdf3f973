import { test, expect } from "@playwright/test";

test("the app shell renders on the server, hydrates, and reacts to input", async ({ page }) => {
  const errors: string[] = [];
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  page.on("pageerror", (e) => errors.push(String(e)));

  // Server-rendered before any wasm runs.
  const html = await (await page.request.get("/")).text();
  expect(html).toContain("<h1>Generate</h1>");
  expect(html).toContain('data-hydrated="false"');

  await page.goto("/");
  await expect(page.getByRole("navigation", { name: "Main" })).toBeVisible();
  await expect(page.locator("section.generate")).toHaveAttribute("data-hydrated", "true");

  // The token counter follows the prompt (the server's tokenizer, A1111's count and chunks).
  const prompt = page.getByLabel("Prompt", { exact: true });
  await prompt.fill("a lighthouse at dawn");
  await expect(page.locator("#prompt-count")).toHaveText("4/75");
  await prompt.fill("red ".repeat(100).trim());
  await expect(page.locator("#prompt-count")).toHaveText("100/150 · 2 chunks");

  // Ctrl+Up / Ctrl+Down weight the selection as A1111 does.
  await prompt.fill("a lighthouse at dawn");
  await prompt.evaluate((el: HTMLTextAreaElement) => el.setSelectionRange(2, 12));
  await prompt.press("Control+ArrowUp");
  await expect(prompt).toHaveValue("a (lighthouse:1.1) at dawn");
  await prompt.press("Control+ArrowUp");
  await expect(prompt).toHaveValue("a (lighthouse:1.2) at dawn");
  await prompt.press("Control+ArrowDown");
  await prompt.press("Control+ArrowDown");
  await expect(prompt).toHaveValue("a lighthouse at dawn");
  await expect(page.locator("#prompt-count")).toHaveText("4/75");

  // Client-side navigation between the pages.
  for (const name of ["Gallery", "Queue", "Models"]) {
    await page.getByRole("link", { name }).click();
    await expect(page.getByRole("heading", { name })).toBeVisible();
  }
  expect(errors).toEqual([]);
});
