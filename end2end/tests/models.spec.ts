import { test, expect } from "@playwright/test";

// The test command starts a fake hub (end2end/fake-hub.ts) serving the tiny model as
// easel-test/tiny-sd and points the server's HF_ENDPOINT at it.
test("pull a model with live progress, make it the default, delete it", async ({ page }) => {
  expect(process.env.EASEL_E2E_HUB_PORT, "run through scripts/test.sh, which starts the fake hub").toBeTruthy();
  await page.goto("/models");
  await expect(page.locator("section.models")).toHaveAttribute("data-hydrated", "true");
  const input = page.getByLabel("Pull from Hugging Face");

  await input.fill("not a repo");
  await page.getByRole("button", { name: "Pull" }).click();
  await expect(page.locator(".pull-form [role=alert]")).toContainText('invalid model "not a repo"');

  await input.fill("easel-test/tiny-sd");
  await page.getByRole("button", { name: "Pull" }).click();
  const pull = page.locator("article.pull-card").filter({ hasText: "easel-test/tiny-sd@main" });
  await expect(pull).toBeVisible();
  // The card only changes through the SSE stream, so reaching "done" proves it was followed live.
  await expect(pull).toHaveAttribute("data-state", "done", { timeout: 60_000 });
  await expect(pull.locator(".pull-state")).toContainText("Ready");
  await expect(pull.locator("progress")).toHaveAttribute("value", "1");
  await page.screenshot({ path: "test-results/screenshots/models-pulled.png", fullPage: true });

  const row = page.locator('tr[data-model="easel-test/tiny-sd"]');
  await expect(row).toBeVisible();
  await expect(row).toContainText("pulled from the hub by Easel");
  await row.getByRole("button", { name: "Make default" }).click();
  await expect(row).toHaveAttribute("data-default", "true");
  await expect(page.locator('tr[data-model="tiny-sd"]')).toHaveAttribute("data-default", "false");

  page.once("dialog", (d) => d.accept());
  await row.getByRole("button", { name: "Delete" }).click();
  await expect(row).toHaveCount(0);
  await expect(page.locator('tr[data-model="tiny-sd"]')).toHaveAttribute("data-default", "true");
});
