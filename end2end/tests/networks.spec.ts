import { test, expect, Page } from "@playwright/test";

// scripts/test.sh points the server at an AUTOMATIC1111-layout folder (EASEL_EXTRA_MODELS_DIRS)
// holding the tiny model as a single-file checkpoint (models/Stable-diffusion/tiny-ldm.safetensors),
// a kohya LoRA (models/Lora/style.safetensors) and a VAE (models/VAE/tiny-vae.safetensors).
const STYLE_HASH = "1b296ae41050"; // A1111's Lora hash of tests/fixtures/lora/style-kohya.safetensors

async function openGenerate(page: Page) {
  await page.goto("/");
  await expect(page.locator("section.generate")).toHaveAttribute("data-hydrated", "true");
}

test("a checkpoint and a LoRA from another tool's folder: generated, with Lora hashes in the infotext", async ({ page }) => {
  await openGenerate(page);
  await page.getByLabel("Prompt", { exact: true }).fill("networks fox in ink");
  await page.getByLabel("Width").fill("64");
  await page.getByLabel("Height").fill("64");
  await page.getByLabel("Steps").fill("3");
  await page.getByLabel("Seed").fill("77");
  await page.getByLabel("Model").selectOption("tiny-ldm.safetensors");
  await page.getByLabel("Add a LoRA").selectOption("style");
  const row = page.locator('li.lora[data-lora="style"]');
  await expect(row).toBeVisible();
  await expect(page.getByLabel("Add a LoRA")).toHaveValue("");
  await row.getByLabel("style weight", { exact: true }).fill("0.8");
  await page.getByLabel("VAE", { exact: true }).selectOption("tiny-vae.safetensors");
  await page.getByRole("button", { name: "Generate" }).click();
  const job = page.locator("article.job-card").filter({ hasText: "networks fox in ink" }).first();
  await expect(job).toHaveAttribute("data-status", "succeeded", { timeout: 60_000 });
  const id = await job.getAttribute("data-job-id");
  const view = await (await page.request.get(`/api/v1/generate/${id}`)).json();
  expect(view.request.loras).toEqual([{ name: "style", weight: 0.8 }]);
  expect(view.request.vae).toBe("tiny-vae.safetensors");
  const infotext: string = view.images[0].infotext;
  expect(infotext).toContain(`Lora hashes: "style: ${STYLE_HASH}"`);
  expect(infotext).toContain("Model: tiny-ldm");
  expect(infotext).toContain("VAE: tiny-vae");

  // The choices survive a reload (the form is kept in local storage), and a LoRA can be removed.
  await page.reload();
  await expect(page.locator("section.generate")).toHaveAttribute("data-hydrated", "true");
  await expect(page.locator('li.lora[data-lora="style"]')).toBeVisible();
  await page.getByRole("button", { name: "Remove style" }).click();
  await expect(page.locator("li.lora")).toHaveCount(0);
});

test("the Models page lists LoRAs and VAEs and merges two checkpoints", async ({ page }) => {
  await page.goto("/models");
  await expect(page.locator("section.models")).toHaveAttribute("data-hydrated", "true");
  await expect(page.locator('table[data-kind="loras"] tr[data-file="style.safetensors"]')).toContainText("read-only");
  await expect(page.locator('table[data-kind="vae"] tr[data-file="tiny-vae.safetensors"]')).toBeVisible();
  await expect(page.locator('table[data-kind="embeddings"] tr[data-file="tinystyle"]')).toBeVisible();

  const form = page.locator("form.merge-form");
  await form.getByLabel("A (primary)").selectOption("tiny-ldm.safetensors");
  await form.getByLabel("B (secondary)").selectOption("tiny-ldm.safetensors");
  await form.getByLabel("Alpha").fill("0.5");
  await form.getByLabel("New checkpoint name").fill("bad/name");
  await form.getByRole("button", { name: "Merge" }).click();
  await expect(form.locator("#name-error")).toContainText("letters, digits");
  const name = `e2e-merge-${Date.now()}`;
  await form.getByLabel("New checkpoint name").fill(name);
  await form.getByRole("button", { name: "Merge" }).click();
  await expect(form.locator(".merge-done")).toContainText(`Wrote ${name}.safetensors`, { timeout: 60_000 });
  // The merged file is a model at once.
  await expect(page.locator(`tr[data-model="${name}.safetensors"]`)).toBeVisible();
});
