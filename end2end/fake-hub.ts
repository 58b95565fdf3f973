// A Hugging Face hub on 127.0.0.1 for the browser tests: serves one folder as a hub repository
// (file list API, HEAD metadata with X-Repo-Commit / ETag / X-Linked-Etag / X-Linked-Size, large
// files redirected to a "CDN" path with Range support). Content is sent in small, slightly
// delayed chunks so the UI's live progress has something to show.
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { createServer, Server, ServerResponse } from "node:http";
import { join, relative, sep } from "node:path";

const LFS_THRESHOLD = 100_000;

function walk(dir: string, base = dir, out = new Map<string, Buffer>()): Map<string, Buffer> {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) walk(path, base, out);
    else out.set(relative(base, path).split(sep).join("/"), readFileSync(path));
  }
  return out;
}

const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");
const gitSha1 = (b: Buffer) => createHash("sha1").update(`blob ${b.length}\0`).update(b).digest("hex");

async function sendSlowly(res: ServerResponse, body: Buffer) {
  for (let at = 0; at < body.length; at += 256 * 1024) {
    if (!res.write(body.subarray(at, at + 256 * 1024))) await new Promise((r) => res.once("drain", r));
    await new Promise((r) => setTimeout(r, 15));
  }
  res.end();
}

export function startFakeHub(port: number, repo: string, folder: string): Promise<Server> {
  const files = walk(folder);
  const commit = "e2e0".repeat(10);
  const server = createServer(async (req, res) => {
    const url = new URL(req.url ?? "/", `http://127.0.0.1:${port}`);
    const path = decodeURIComponent(url.pathname);
    if (path.startsWith(`/api/models/${repo}/revision/`)) {
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify({ id: repo, modelId: repo, sha: commit, siblings: [...files.keys()].map((rfilename) => ({ rfilename })) }));
      return;
    }
    const resolve = `/${repo}/resolve/`;
    if (path.startsWith(resolve)) {
      const file = path.slice(resolve.length).split("/").slice(1).join("/");
      const body = files.get(file);
      if (!body) {
        res.writeHead(404, { "x-error-code": "EntryNotFound" }).end();
        return;
      }
      if (body.length >= LFS_THRESHOLD) {
        res.writeHead(302, {
          location: `http://127.0.0.1:${port}/cdn/${file}`,
          "x-repo-commit": commit,
          "x-linked-etag": `"${sha256(body)}"`,
          "x-linked-size": String(body.length),
        }).end();
        return;
      }
      res.writeHead(200, { "x-repo-commit": commit, etag: `"${gitSha1(body)}"`, "content-length": String(body.length) });
      if (req.method === "HEAD") res.end();
      else res.end(body);
      return;
    }
    if (path.startsWith("/cdn/")) {
      const body = files.get(path.slice("/cdn/".length));
      if (!body) {
        res.writeHead(404).end();
        return;
      }
      const start = Number(/^bytes=(\d+)-$/.exec(req.headers.range ?? "")?.[1] ?? 0);
      const headers = { "content-length": String(body.length - start), "accept-ranges": "bytes" };
      if (start > 0) res.writeHead(206, { ...headers, "content-range": `bytes ${start}-${body.length - 1}/${body.length}` });
      else res.writeHead(200, headers);
      await sendSlowly(res, body.subarray(start));
      return;
    }
    res.writeHead(404, { "x-error-code": "RepoNotFound" }).end();
  });
  return new Promise((ok) => server.listen(port, "127.0.0.1", () => ok(server)));
}
