import { join } from "node:path";
import { startFakeHub } from "./fake-hub";

// `cargo leptos end-to-end` starts the server and the tests at the same moment; wait until the
// server answers its health check before any test runs. When the test command names a port for
// it, start the fake hub the server's HF_ENDPOINT points at (the Models page pulls from it).
export default async function globalSetup() {
  const hubPort = Number(process.env.EASEL_E2E_HUB_PORT ?? 0);
  const hub = hubPort ? await startFakeHub(hubPort, "easel-test/tiny-sd", join(__dirname, "..", "models", "tiny-sd")) : undefined;
  const base = process.env.BASE_URL ?? "http://127.0.0.1:3000";
  const deadline = Date.now() + 60_000;
  let last = "";
  while (Date.now() < deadline) {
    try {
      const r = await fetch(`${base}/api/v1/health`);
      if (r.ok) return async () => hub?.close();
      last = `status ${r.status}: ${await r.text()}`;
    } catch (e) {
      last = String(e);
    }
    await new Promise((res) => setTimeout(res, 250));
  }
  throw new Error(`server at ${base} not healthy after 60 s: ${last}`);
}
