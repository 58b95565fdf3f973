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

  // A client-side interaction: the word count follows the prompt without a server round trip.
  await page.getByLabel("Prompt", { exact: true }).fill("a lighthouse at dawn");
  await expect(page.locator("#prompt-count")).toHaveText("4 words");

  // Client-side navigation between the pages.
  for (const name of ["Gallery", "Queue", "Models"]) {
    await page.getByRole("link", { name }).click();
    await expect(page.getByRole("heading", { name })).toBeVisible();
  }
  expect(errors).toEqual([]);
});
