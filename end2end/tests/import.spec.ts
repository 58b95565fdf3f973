import { test, expect, Page } from "@playwright/test";
import { readFileSync } from "node:fs";
import { join } from "node:path";

// The Generate form's Import: files as AUTOMATIC1111 and ComfyUI write them
// (tests/fixtures/import, made by models/tooling/make_import_fixtures.py) fill the form in the
// mode that gives that tool's picture.

const fixtures = join(__dirname, "..", "..", "tests", "fixtures", "import");

async function openGenerate(page: Page) {
  await page.goto("/");
  await expect(page.locator("section.generate")).toHaveAttribute("data-hydrated", "true");
}

test("an A1111 PNG fills the form in the A1111 mode", async ({ page }) => {
  await openGenerate(page);
  await page.locator("input[name=import]").setInputFiles({
    name: "a1111.png",
    mimeType: "image/png",
    buffer: readFileSync(join(fixtures, "a1111.png")),
  });
  await expect(page.locator(".import-result")).toContainText("AUTOMATIC1111 parameters");
  await expect(page.locator(".import-result")).toContainText("Denoising strength");
  await expect(page.locator("#prompt")).toHaveValue("a red fox in the snow, (watercolor:1.2)");
  await expect(page.locator("#seed")).toHaveValue("7");
  await expect(page.locator("#sampler")).toHaveValue("dpmpp_2m");
  await expect(page.locator("#compat")).toHaveValue("a1111");
});

test("a ComfyUI workflow fills the form in the ComfyUI mode; a file without settings says why", async ({ page }) => {
  await openGenerate(page);
  await page.locator("input[name=import]").setInputFiles({
    name: "workflow.json",
    mimeType: "application/json",
    buffer: readFileSync(join(fixtures, "workflow_ui.json")),
  });
  await expect(page.locator(".import-result")).toContainText("ComfyUI workflow");
  await expect(page.locator("#seed")).toHaveValue("7");
  await expect(page.locator("#compat")).toHaveValue("comfyui");
  await page.locator("input[name=import]").setInputFiles({
    name: "notes.txt",
    mimeType: "text/plain",
    buffer: Buffer.from("just a prompt"),
  });
  await expect(page.locator(".import-settings .field-error")).toContainText("no A1111 parameters");
});
