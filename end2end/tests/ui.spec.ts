import { test, expect, Page } from "@playwright/test";

// All generations use the bundled tiny model at small sizes so the suite stays fast.
async function openGenerate(page: Page) {
  await page.goto("/");
  await expect(page.locator("section.generate")).toHaveAttribute("data-hydrated", "true");
}

async function fillForm(page: Page, o: { prompt: string; width?: number; height?: number; steps?: number; seed?: string }) {
  await page.getByLabel("Prompt", { exact: true }).fill(o.prompt);
  await page.getByLabel("Width").fill(String(o.width ?? 64));
  await page.getByLabel("Height").fill(String(o.height ?? 64));
  await page.getByLabel("Steps").fill(String(o.steps ?? 4));
  await page.getByLabel("Seed").fill(o.seed ?? "");
}

function card(page: Page, prompt: string) {
  return page.locator("article.job-card").filter({ hasText: prompt }).first();
}

test("golden path: generate, watch progress, find it in the gallery with its settings", async ({ page }) => {
  await openGenerate(page);
  await fillForm(page, { prompt: "golden path lighthouse", width: 128, height: 128, steps: 12, seed: "4242" });
  await page.getByRole("button", { name: "Generate" }).click();
  const job = card(page, "golden path lighthouse");
  await expect(job).toBeVisible();
  await expect(job.locator(".job-state")).toHaveText(/Step \d+\/12|Done/, { timeout: 60_000 });
  await expect(job).toHaveAttribute("data-status", "succeeded", { timeout: 60_000 });
  const img = job.locator(".job-images img").first();
  await expect(img).toBeVisible();
  await page.screenshot({ path: "test-results/screenshots/generate.png", fullPage: true });

  await page.reload();
  await page.getByRole("link", { name: "Gallery" }).click();
  await page.getByLabel("Filter by prompt").fill("golden path");
  const tile = page.locator(".tile").filter({ hasText: "golden path lighthouse" }).first();
  await expect(tile).toBeVisible();
  await page.screenshot({ path: "test-results/screenshots/gallery.png", fullPage: true });
  await tile.click();
  const detail = page.getByRole("dialog", { name: "Image details" });
  await expect(detail.locator('dd[data-field="Seed"]')).toHaveText("4242");
  await expect(detail.locator('dd[data-field="Prompt"]')).toHaveText("golden path lighthouse");
  await expect(detail.locator('dd[data-field="Size"]')).toHaveText("128×128");
  await page.screenshot({ path: "test-results/screenshots/detail.png", fullPage: true });
});

test("gallery thumbnails are in the server-rendered HTML", async ({ page }) => {
  const html = await (await page.request.get("/gallery")).text();
  expect(html).toContain("/outputs/");
});

test("cancel a running job", async ({ page }) => {
  await openGenerate(page);
  await fillForm(page, { prompt: "cancel me please", width: 256, height: 256, steps: 150 });
  await page.getByRole("button", { name: "Generate" }).click();
  const job = card(page, "cancel me please");
  await expect(job.locator(".job-state")).toHaveText(/Step [1-9]\d*\/150/, { timeout: 60_000 });
  await job.getByRole("button", { name: "Cancel" }).click();
  await expect(job).toHaveAttribute("data-status", "cancelled", { timeout: 30_000 });
  await expect(job.locator(".job-state")).toHaveText("Cancelled");
});

test("three queued jobs finish in order", async ({ page }) => {
  await openGenerate(page);
  for (const n of [1, 2, 3]) {
    await fillForm(page, { prompt: `queued order ${n}`, steps: 6 });
    await page.getByRole("button", { name: "Generate" }).click();
    await expect(card(page, `queued order ${n}`)).toBeVisible();
  }
  for (const n of [1, 2, 3]) {
    await expect(card(page, `queued order ${n}`)).toHaveAttribute("data-status", "succeeded", { timeout: 60_000 });
  }
  const history = await (await page.request.get("/api/v1/generate?limit=3")).json();
  const jobs = history.jobs.reverse();
  expect(jobs.map((j: any) => j.request.prompt)).toEqual(["queued order 1", "queued order 2", "queued order 3"]);
  // One worker, in submission order: each job started no earlier than the one before it
  // finished, and (a job takes well over a millisecond) finished strictly later than it, so
  // equal timestamps cannot pass for an order.
  for (const n of [1, 2]) {
    expect(jobs[n].started_at_ms).toBeGreaterThanOrEqual(jobs[n - 1].finished_at_ms);
    expect(jobs[n].finished_at_ms).toBeGreaterThan(jobs[n - 1].finished_at_ms);
  }
});

test("width 513 is refused on the field and nothing is submitted", async ({ page }) => {
  await openGenerate(page);
  const submits: string[] = [];
  page.on("request", (r) => { if (r.url().includes("/api/ui/submit")) submits.push(r.postData() ?? ""); });
  await fillForm(page, { prompt: "bad width", width: 513 });
  await page.getByRole("button", { name: "Generate" }).click();
  await expect(page.locator("#width-error")).toHaveText("width 513 is not a multiple of 8; use 512 or 520");
  await expect(page.getByLabel("Width")).toHaveAttribute("aria-invalid", "true");
  // Instead of waiting an arbitrary time for a request that should never come: submit a valid
  // form and wait for its request. Clicks are handled in order, so a submit from the refused
  // click would have been sent before this one.
  await fillForm(page, { prompt: "fixed width", width: 512 });
  const valid = page.waitForRequest((r) => r.url().includes("/api/ui/submit"));
  await page.getByRole("button", { name: "Generate" }).click();
  await valid;
  expect(submits).toHaveLength(1);
  expect(submits[0]).toContain("fixed width");
  await expect(card(page, "fixed width")).toBeVisible();
  await expect(page.locator("#width-error")).toHaveCount(0);
  await expect(page.locator("article.job-card").filter({ hasText: "bad width" })).toHaveCount(0);
  await expect(card(page, "fixed width")).toHaveAttribute("data-status", "succeeded", { timeout: 60_000 });
});

test("'Use these settings' fills the form and regenerates a byte-identical image", async ({ page }) => {
  await openGenerate(page);
  await fillForm(page, { prompt: "reproduce me exactly", steps: 5 });
  await page.getByRole("button", { name: "Generate" }).click();
  const first = card(page, "reproduce me exactly");
  await expect(first).toHaveAttribute("data-status", "succeeded", { timeout: 60_000 });
  await page.getByLabel("Prompt", { exact: true }).fill("something else");
  await first.getByRole("button", { name: "Use these settings" }).click();
  await expect(page.getByLabel("Prompt", { exact: true })).toHaveValue("reproduce me exactly");
  const seed = await page.getByLabel("Seed").inputValue();
  expect(seed).toMatch(/^\d+$/);
  await page.getByRole("button", { name: "Generate" }).click();
  const cards = page.locator("article.job-card").filter({ hasText: "reproduce me exactly" });
  await expect(cards).toHaveCount(2);
  await expect(cards.nth(0)).toHaveAttribute("data-status", "succeeded", { timeout: 60_000 });
  const urls = await cards.locator(".job-images img").evaluateAll((imgs) => imgs.map((i) => (i as HTMLImageElement).getAttribute("src")));
  expect(urls.length).toBe(2);
  expect(urls[0]).not.toEqual(urls[1]);
  const [a, b] = await Promise.all(urls.map(async (u) => (await page.request.get(u!)).body()));
  expect(Buffer.compare(a, b)).toBe(0);
});

test("settings persist across a reload", async ({ page }) => {
  await openGenerate(page);
  await fillForm(page, { prompt: "remember me", width: 96, steps: 7 });
  await page.reload();
  await expect(page.locator("section.generate")).toHaveAttribute("data-hydrated", "true");
  await expect(page.getByLabel("Prompt", { exact: true })).toHaveValue("remember me");
  await expect(page.getByLabel("Width")).toHaveValue("96");
  await expect(page.getByLabel("Steps")).toHaveValue("7");
});

test.describe("phone", () => {
  test.use({ viewport: { width: 390, height: 844 } });
  test("form and gallery are usable at 390 px", async ({ page }) => {
    await openGenerate(page);
    const noHorizontalScroll = async () =>
      expect(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth + 1)).toBe(true);
    await expect(page.getByRole("button", { name: "Generate" })).toBeVisible();
    await noHorizontalScroll();
    await fillForm(page, { prompt: "phone sized", steps: 4 });
    await page.getByRole("button", { name: "Generate" }).click();
    await expect(card(page, "phone sized")).toHaveAttribute("data-status", "succeeded", { timeout: 60_000 });
    await page.screenshot({ path: "test-results/screenshots/phone-generate.png", fullPage: true });
    await page.getByRole("link", { name: "Gallery" }).click();
    await expect(page.locator(".tile").first()).toBeVisible();
    await noHorizontalScroll();
    await page.screenshot({ path: "test-results/screenshots/phone-gallery.png", fullPage: true });
  });
});

test("queue and models pages", async ({ page }) => {
  await page.goto("/models");
  // Both bundled models are listed: the default one and the 9-channel inpainting one.
  await expect(page.locator('tr[data-model="tiny-sd"]')).toBeVisible();
  await expect(page.locator('tr[data-model="tiny-sd-inpaint"]')).toBeVisible();
  await page.screenshot({ path: "test-results/screenshots/models.png", fullPage: true });
  await page.goto("/queue");
  await expect(page.getByRole("heading", { name: "Queue" })).toBeVisible();
  await page.screenshot({ path: "test-results/screenshots/queue.png", fullPage: true });
});

test("the gallery loads the next page when scrolled to the end", async ({ page }) => {
  const ids: string[] = [];
  for (let n = 0; n < 26; n++) {
    const r = await page.request.post("/api/v1/generate", {
      data: { prompt: `scroll page ${n}`, seed: n, width: 64, height: 64, steps: 2, sampler: "euler" },
    });
    expect(r.status()).toBe(202);
    ids.push((await r.json()).id);
  }
  await expect.poll(async () => (await (await page.request.get(`/api/v1/generate/${ids[25]}`)).json()).status, { timeout: 60_000 }).toBe("succeeded");
  await page.goto("/gallery");
  const tiles = page.locator(".tile");
  await expect(tiles.first()).toBeVisible();
  await expect(page.locator("section.gallery")).toHaveAttribute("data-hydrated", "true");
  const before = await tiles.count();
  expect(before).toBeGreaterThanOrEqual(24);
  await page.mouse.wheel(0, 100_000);
  await expect.poll(async () => tiles.count(), { timeout: 10_000 }).toBeGreaterThan(before);
});

test("a reload brings back the cards of jobs still running, and the queue page lists them", async ({ page }) => {
  await openGenerate(page);
  await fillForm(page, { prompt: "survives a reload", width: 256, height: 256, steps: 150 });
  await page.getByRole("button", { name: "Generate" }).click();
  await expect(card(page, "survives a reload").locator(".job-state")).toHaveText(/Step [1-9]\d*\/150/, { timeout: 60_000 });
  await page.reload();
  await expect(page.locator("section.generate")).toHaveAttribute("data-hydrated", "true");
  await expect(card(page, "survives a reload").locator(".job-state")).toHaveText(/Step [1-9]\d*\/150/, { timeout: 30_000 });
  await page.goto("/queue");
  await expect(page.locator("section.queue")).toHaveAttribute("data-hydrated", "true");
  const row = page.locator(".queue-list li").filter({ hasText: "survives a reload" });
  await expect(row).toBeVisible();
  await row.getByRole("button", { name: "Cancel" }).click();
  await expect(row).toHaveCount(0, { timeout: 15_000 });
});

test("the prompt filter searches the whole history, not just the loaded page", async ({ page }) => {
  // An image older than the first gallery page (the scroll test above made 26 newer jobs).
  const r = await page.request.get("/api/v1/generate?limit=24");
  const firstPage = (await r.json()).jobs.map((j: { request: { prompt: string } }) => j.request.prompt);
  expect(firstPage).not.toContain("golden path lighthouse");
  await page.goto("/gallery");
  await expect(page.locator("section.gallery")).toHaveAttribute("data-hydrated", "true");
  await page.getByLabel("Filter by prompt").fill("GOLDEN path");
  const tiles = page.locator(".tile");
  await expect(tiles.filter({ hasText: "golden path lighthouse" })).toHaveCount(1);
  await expect(tiles).toHaveCount(1);
  await page.getByLabel("Filter by prompt").fill("no such prompt anywhere");
  await expect(page.locator(".gallery .empty")).toContainText("No images whose prompt contains");
});
