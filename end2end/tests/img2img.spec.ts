import { test, expect, Page, Locator } from "@playwright/test";

// Image to image on the Generate page, against the real server and the bundled tiny model
// (64x64, 4 steps: each generation takes a second or two).

async function openGenerate(page: Page) {
  await page.goto("/");
  await expect(page.locator("section.generate")).toHaveAttribute("data-hydrated", "true");
}

// A 64x64 PNG drawn by the browser itself (a gradient with a square), as bytes.
async function makePng(page: Page, w = 64, h = 64): Promise<Buffer> {
  const dataUrl = await page.evaluate(([w, h]) => {
    const c = document.createElement("canvas");
    c.width = w;
    c.height = h;
    const g = c.getContext("2d")!;
    const grad = g.createLinearGradient(0, 0, w, h);
    grad.addColorStop(0, "#2050c0");
    grad.addColorStop(1, "#f0c040");
    g.fillStyle = grad;
    g.fillRect(0, 0, w, h);
    g.fillStyle = "#ffffff";
    g.fillRect(w / 4, h / 4, w / 2, h / 2);
    return c.toDataURL("image/png");
  }, [w, h]);
  return Buffer.from(dataUrl.split(",")[1], "base64");
}

async function switchToImg2img(page: Page) {
  await page.getByLabel("Image to image").check();
  await expect(page.locator("fieldset.img2img")).toBeVisible();
}

async function pickImage(page: Page) {
  const png = await makePng(page);
  await page.locator("#init-file").setInputFiles({ name: "init.png", mimeType: "image/png", buffer: png });
  await expect(page.locator("img.init-preview")).toBeVisible();
  await expect(page.locator("#init-size")).toHaveText("64×64 px");
}

async function fill(page: Page, prompt: string) {
  await page.getByLabel("Prompt", { exact: true }).fill(prompt);
  await page.getByLabel("Steps").fill("4");
  await page.getByLabel("Seed").fill("");
}

function card(page: Page, prompt: string) {
  return page.locator("article.job-card").filter({ hasText: prompt }).first();
}

// Painted pixels of the mask canvas (alpha > 0).
async function paintedPixels(canvas: Locator): Promise<number> {
  return canvas.evaluate((c: HTMLCanvasElement) => {
    const d = c.getContext("2d")!.getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
    return n;
  });
}

async function drag(page: Page, canvas: Locator, from: [number, number], to: [number, number]) {
  await canvas.scrollIntoViewIfNeeded();
  const box = (await canvas.boundingBox())!;
  await page.mouse.move(box.x + box.width * from[0], box.y + box.height * from[1]);
  await page.mouse.down();
  await page.mouse.move(box.x + box.width * to[0], box.y + box.height * to[1], { steps: 6 });
  await page.mouse.up();
}

async function jobRequest(page: Page, job: Locator) {
  const id = await job.getAttribute("data-job-id");
  return (await (await page.request.get(`/api/v1/generate/${id}`)).json()).request;
}

test("img2img: pick a PNG, see the preview and strength, generate", async ({ page }) => {
  await openGenerate(page);
  await fill(page, "img2img from a picked png");
  await switchToImg2img(page);
  await pickImage(page);
  // The size fields follow the picture.
  await expect(page.getByLabel("Width")).toHaveValue("64");
  await expect(page.getByLabel("Height")).toHaveValue("64");
  const strength = page.locator("#strength");
  await expect(strength).toBeVisible();
  await expect(strength).toHaveValue("0.75");
  await strength.fill("0.5");
  await page.screenshot({ path: "test-results/screenshots/img2img-form.png", fullPage: true });
  await page.getByRole("button", { name: "Generate" }).click();
  const job = card(page, "img2img from a picked png");
  await expect(job).toHaveAttribute("data-status", "succeeded", { timeout: 60_000 });
  await expect(job.locator(".job-images img").first()).toBeVisible();
  const request = await jobRequest(page, job);
  expect(request.init_image).toMatch(/^[A-Za-z0-9_-]+$/);
  expect(request.strength).toBe(0.5);
  expect(request.mask ?? null).toBeNull();
});

test("img2img: drop a file on the drop zone, or paste one", async ({ page }) => {
  await openGenerate(page);
  await switchToImg2img(page);
  const png = (await makePng(page, 48, 40)).toString("base64");
  // The browser's own DataTransfer carries the file, as a real drop or paste does.
  const deliver = (kind: "drop" | "paste") =>
    page.evaluate(([b64, kind]) => {
      const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      const dt = new DataTransfer();
      dt.items.add(new File([bytes], `${kind}.png`, { type: "image/png" }));
      if (kind === "drop") {
        document.querySelector(".drop-zone")!.dispatchEvent(new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true }));
      } else {
        window.dispatchEvent(new ClipboardEvent("paste", { clipboardData: dt, bubbles: true, cancelable: true }));
      }
    }, [png, kind] as const);
  await deliver("drop");
  await expect(page.locator("#init-size")).toHaveText("48×40 px");
  await expect(page.locator("img.init-preview")).toBeVisible();
  // Rounded down to multiples of 8, at least the smallest size.
  await expect(page.getByLabel("Width")).toHaveValue("64");
  await page.locator("#init-file").setInputFiles({ name: "init.png", mimeType: "image/png", buffer: await makePng(page) });
  await expect(page.locator("#init-size")).toHaveText("64×64 px");
  await deliver("paste");
  await expect(page.locator("#init-size")).toHaveText("48×40 px");
});

test("img2img: an upload the server refuses shows its message", async ({ page }) => {
  await openGenerate(page);
  await switchToImg2img(page);
  await page.locator("#init-file").setInputFiles({ name: "notes.png", mimeType: "image/png", buffer: Buffer.from("not a picture") });
  await expect(page.locator("#upload-error")).toBeVisible();
  await expect(page.locator("#upload-error")).not.toHaveText("");
  await expect(page.locator("img.init-preview")).toHaveCount(0);
});

test("inpaint: paint with the mouse, undo, clear, then generate with the mask", async ({ page }) => {
  await openGenerate(page);
  await fill(page, "inpaint a painted square");
  await switchToImg2img(page);
  await pickImage(page);
  const canvas = page.locator("canvas.mask-canvas");
  await expect(canvas).toHaveJSProperty("width", 64);
  expect(await paintedPixels(canvas)).toBe(0);

  await drag(page, canvas, [0.2, 0.2], [0.5, 0.2]);
  const one = await paintedPixels(canvas);
  expect(one).toBeGreaterThan(0);
  await expect(canvas).toHaveAttribute("data-painted", "true");
  await drag(page, canvas, [0.2, 0.7], [0.8, 0.7]);
  const two = await paintedPixels(canvas);
  expect(two).toBeGreaterThan(one);

  await page.getByRole("button", { name: "Undo" }).click();
  expect(await paintedPixels(canvas)).toBe(one);
  await page.getByRole("button", { name: "Clear" }).click();
  expect(await paintedPixels(canvas)).toBe(0);
  await expect(canvas).toHaveAttribute("data-painted", "false");
  await page.getByRole("button", { name: "Undo" }).click();
  expect(await paintedPixels(canvas)).toBe(one);

  // A painted mask and outpainting exclude each other: the field says so, nothing is sent.
  await page.getByLabel("Left").fill("8");
  await page.getByRole("button", { name: "Generate" }).click();
  await expect(page.locator('[id="outpaint-error"]')).toContainText("not both");
  await page.getByLabel("Left").fill("0");

  await page.screenshot({ path: "test-results/screenshots/inpaint-mask.png", fullPage: true });
  await page.getByRole("button", { name: "Generate" }).click();
  const job = card(page, "inpaint a painted square");
  await expect(job).toHaveAttribute("data-status", "succeeded", { timeout: 60_000 });
  await expect(job.locator(".job-images img").first()).toBeVisible();
  const request = await jobRequest(page, job);
  expect(request.mask).toMatch(/^[A-Za-z0-9_-]+$/);
  expect(request.mask_blur).toBe(4);
  expect(request.width).toBe(64);
});

test("outpaint: extend one side and generate", async ({ page }) => {
  await openGenerate(page);
  await fill(page, "outpaint to the right");
  await switchToImg2img(page);
  await pickImage(page);
  await page.getByLabel("Right").fill("16");
  await page.getByRole("button", { name: "Generate" }).click();
  const job = card(page, "outpaint to the right");
  await expect(job).toHaveAttribute("data-status", "succeeded", { timeout: 60_000 });
  const request = await jobRequest(page, job);
  expect(request.outpaint).toEqual({ left: 0, right: 16, top: 0, bottom: 0 });
  expect(request.width).toBe(80);
});

test("'Send to img2img' loads a generated image as the init image (job card and gallery)", async ({ page }) => {
  await openGenerate(page);
  await page.getByLabel("Text to image").check();
  await fill(page, "send me to img2img");
  await page.getByLabel("Width").fill("64");
  await page.getByLabel("Height").fill("64");
  await page.getByRole("button", { name: "Generate" }).click();
  const job = card(page, "send me to img2img");
  await expect(job).toHaveAttribute("data-status", "succeeded", { timeout: 60_000 });
  const url = await job.locator(".job-images img").first().getAttribute("src");
  await job.getByRole("button", { name: "Send to img2img" }).click();
  await expect(page.getByLabel("Image to image")).toBeChecked();
  await expect(page.locator("img.init-preview")).toHaveAttribute("src", url!);
  await page.getByRole("button", { name: "Generate" }).click();
  const cards = page.locator("article.job-card").filter({ hasText: "send me to img2img" });
  await expect(cards).toHaveCount(2);
  const second = cards.first();
  await expect(second).toHaveAttribute("data-status", "succeeded", { timeout: 60_000 });
  expect((await jobRequest(page, second)).init_image).toBeTruthy();

  // From the gallery's detail view.
  await page.getByLabel("Text to image").check();
  await page.getByRole("link", { name: "Gallery" }).click();
  await expect(page.locator("section.gallery")).toHaveAttribute("data-hydrated", "true");
  await page.getByLabel("Filter by prompt").fill("send me to img2img");
  await page.locator(".tile").first().click();
  const detailUrl = await page.getByRole("dialog", { name: "Image details" }).locator("img").getAttribute("src");
  await page.getByRole("button", { name: "Send to img2img" }).click();
  await expect(page.locator("section.generate")).toHaveAttribute("data-hydrated", "true");
  await expect(page.getByLabel("Image to image")).toBeChecked();
  await expect(page.locator("img.init-preview")).toHaveAttribute("src", detailUrl!);
});

test("hires fix: enable it in text to image, the image comes out larger", async ({ page }) => {
  await openGenerate(page);
  await fill(page, "hires fix twice the size");
  await page.getByLabel("Width").fill("64");
  await page.getByLabel("Height").fill("64");
  await page.getByLabel("Enable hires fix").check();
  await page.getByLabel("Upscale by").fill("2");
  await page.getByLabel("Hires steps (0 = same)").fill("2");
  await page.getByLabel("Upscaler").selectOption("lanczos");
  await page.getByRole("button", { name: "Generate" }).click();
  const job = card(page, "hires fix twice the size");
  await expect(job).toHaveAttribute("data-status", "succeeded", { timeout: 60_000 });
  const request = await jobRequest(page, job);
  expect(request.hires).toEqual({ scale: 2, strength: 0.7, steps: 2, upscaler: "lanczos" });
  await expect(job.locator(".job-images img").first()).toHaveAttribute("width", "128");
  // Not offered in image to image (the server refuses it there).
  await switchToImg2img(page);
  await expect(page.getByLabel("Enable hires fix")).toHaveCount(0);
  await page.getByLabel("Text to image").check();
});

test.describe("phone", () => {
  test.use({ viewport: { width: 390, height: 844 }, hasTouch: true });
  test("paint the mask with a finger at 390 px", async ({ page }) => {
    await openGenerate(page);
    await switchToImg2img(page);
    await pickImage(page);
    const canvas = page.locator("canvas.mask-canvas");
    await canvas.scrollIntoViewIfNeeded();
    await expect(canvas).toHaveCSS("touch-action", "none");
    const box = (await canvas.boundingBox())!;
    expect(box.width).toBeLessThanOrEqual(390);
    // A tap (real touch input) paints a dot.
    await page.touchscreen.tap(box.x + box.width * 0.3, box.y + box.height * 0.3);
    await expect.poll(() => paintedPixels(canvas)).toBeGreaterThan(0);
    const dot = await paintedPixels(canvas);
    // A finger stroke as the browser reports it: pointer events of type "touch".
    await canvas.evaluate((c: HTMLCanvasElement) => {
      const r = c.getBoundingClientRect();
      const at = (type: string, fx: number) =>
        c.dispatchEvent(
          new PointerEvent(type, {
            pointerType: "touch", pointerId: 7, isPrimary: true, bubbles: true, cancelable: true,
            clientX: r.left + r.width * fx, clientY: r.top + r.height * 0.7,
          }),
        );
      at("pointerdown", 0.1);
      for (let i = 1; i <= 8; i++) at("pointermove", 0.1 + i * 0.1);
      at("pointerup", 0.9);
    });
    expect(await paintedPixels(canvas)).toBeGreaterThan(dot);
    await expect(canvas).toHaveAttribute("data-painted", "true");
    expect(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth + 1)).toBe(true);
    await page.screenshot({ path: "test-results/screenshots/phone-mask.png", fullPage: true });
  });
});
