import { test, expect } from "@playwright/test";
import { spawn, ChildProcess } from "node:child_process";
import { mkdtempSync, mkdirSync, symlinkSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

// A second server (the binary cargo-leptos just built, with its site) on a models dir that has no
// tiny-sd: its only model, "oracle-tiny", must be the default the Generate page offers and runs.
const root = join(__dirname, "..", "..");

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

let server: ChildProcess | undefined;
let dir = "";
let base = "";

test.beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "easel-no-tiny-"));
  mkdirSync(join(dir, "models"));
  symlinkSync(join(root, "models", "tiny-sd"), join(dir, "models", "oracle-tiny"));
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  server = spawn(join(root, "target", "debug", "easel"), ["serve", "--port", String(port), "--threads", "1"], {
    env: {
      ...process.env,
      EASEL_DATA_DIR: join(dir, "data"),
      EASEL_MODELS_DIR: join(dir, "models"),
      EASEL_EXTRA_MODELS_DIRS: "",
      EASEL_DEFAULT_MODEL: "",
      LEPTOS_SITE_ROOT: join(root, "target", "site"),
    },
    stdio: "ignore",
  });
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      if ((await fetch(`${base}/api/v1/health`)).ok) break;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) throw new Error(`second server at ${base} never answered`);
    await new Promise((r) => setTimeout(r, 250));
  }
});

test.afterAll(async () => {
  server?.kill("SIGTERM");
  await new Promise((r) => setTimeout(r, 500));
  rmSync(dir, { recursive: true, force: true });
});

test("without tiny-sd the default is the model there is, and it generates", async ({ page }) => {
  await page.goto(`${base}/`);
  await expect(page.locator("section.generate")).toHaveAttribute("data-hydrated", "true");
  const choice = page.locator("#model option").first();
  await expect(choice).toHaveText("Default (oracle-tiny)");
  await page.getByLabel("Prompt", { exact: true }).fill("no tiny-sd here");
  await page.getByLabel("Width").fill("64");
  await page.getByLabel("Height").fill("64");
  await page.getByLabel("Steps").fill("2");
  await page.getByRole("button", { name: "Generate" }).click();
  const job = page.locator("article.job-card").filter({ hasText: "no tiny-sd here" }).first();
  await expect(job).toHaveAttribute("data-status", "succeeded", { timeout: 60_000 });
  const id = await job.getAttribute("data-job-id");
  const view = await (await page.request.get(`${base}/api/v1/generate/${id}`)).json();
  expect(view.request.model).toBe("oracle-tiny");
});
