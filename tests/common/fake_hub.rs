//! A Hugging Face hub on 127.0.0.1 for the pull tests: serves folders the way the hub does
//! (`/api/models/{repo}/revision/{rev}`, `HEAD`/`GET /{repo}/resolve/{rev}/{path}` with
//! `X-Repo-Commit`, `ETag`/`X-Linked-Etag`, `X-Linked-Size`, large files redirected to a separate
//! "CDN" path with Range support) and has switches to inject faults.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sha2::Digest;

/// Files at least this big are served as LFS files (sha256 etag, redirect to the CDN).
const LFS_THRESHOLD: usize = 100_000;

pub struct Repo {
    pub commit: String,
    /// Revisions (branches) that resolve to `commit`.
    pub revisions: Vec<String>,
    pub files: BTreeMap<String, Vec<u8>>,
}

#[derive(Default)]
pub struct Faults {
    /// Every request must carry `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// `(file, bytes, times)`: the next `times` content downloads of `file` stop after `bytes`.
    pub drop_after: Option<(String, usize, u32)>,
    /// Content downloads of this file have one byte flipped.
    pub corrupt: Option<String>,
    /// Listed by the API but answered 404 on resolve.
    pub hidden: Option<String>,
    /// Content is sent with a pause after every 64 KiB (a slow link), so a pull can be caught
    /// mid-way.
    pub slow: bool,
    /// `(file, extra)`: content downloads of `file` carry `extra` bytes more than the metadata says.
    pub oversize: Option<(String, usize)>,
    /// This (small, git) file is served with an opaque etag instead of its git sha1.
    pub no_checksum: Option<String>,
}

#[derive(Default)]
pub struct HubState {
    pub repos: Mutex<HashMap<String, Repo>>,
    pub faults: Mutex<Faults>,
    /// Content bytes sent per file path (the CDN and direct GETs).
    pub served: Mutex<HashMap<String, u64>>,
    /// `(file, first byte requested)` for every content request, in order.
    pub requests: Mutex<Vec<(String, u64)>>,
    addr: Mutex<Option<SocketAddr>>,
}

impl HubState {
    pub fn served(&self, file: &str) -> u64 {
        self.served.lock().unwrap().get(file).copied().unwrap_or(0)
    }

    pub fn total_served(&self) -> u64 {
        self.served.lock().unwrap().values().sum()
    }

    /// The bytes of every file of every repo served (what a complete pull of them downloads).
    pub fn total_file_bytes(&self) -> u64 {
        self.repos.lock().unwrap().values().flat_map(|r| r.files.values()).map(|f| f.len() as u64).sum()
    }

    pub fn content_requests(&self, file: &str) -> Vec<u64> {
        self.requests.lock().unwrap().iter().filter(|(f, _)| f == file).map(|(_, start)| *start).collect()
    }
}

pub struct FakeHub {
    pub addr: SocketAddr,
    pub state: Arc<HubState>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl FakeHub {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Every file under `dir`, by its `/`-separated relative path.
pub fn read_folder(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap().filter_map(Result::ok) {
            let path = entry.path();
            if path.is_dir() {
                walk(base, &path, out);
            } else {
                let rel = path.strip_prefix(base).unwrap().to_string_lossy().replace('\\', "/");
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// A hub serving `models/tiny-sd` as `repo` at branch `revision`, plus a README and a PyTorch
/// weight file that a pull must skip.
pub async fn start_serving_tiny(repo: &str, revision: &str) -> FakeHub {
    start_serving(&super::models_dir().join("tiny-sd"), repo, revision).await
}

/// A hub serving `folder` as `repo` at branch `revision` (plus a README and a PyTorch file).
pub async fn start_serving(folder: &Path, repo: &str, revision: &str) -> FakeHub {
    let mut files = read_folder(folder);
    files.insert("README.md".into(), b"# tiny\n".to_vec());
    files.insert("unet/diffusion_pytorch_model.bin".into(), vec![7u8; 200_000]);
    let hub = start().await;
    hub.state
        .repos
        .lock()
        .unwrap()
        .insert(repo.into(), Repo { commit: "c0ffee".repeat(6) + "c0ff", revisions: vec![revision.into()], files });
    hub
}

pub async fn start() -> FakeHub {
    let state = Arc::new(HubState::default());
    let app = Router::new()
        .route("/api/models/{org}/{name}/revision/{rev}", get(repo_info))
        .route("/{org}/{name}/resolve/{rev}/{*path}", get(resolve).head(resolve))
        .route("/cdn/{org}/{name}/{sha}/{*path}", get(cdn))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    *state.addr.lock().unwrap() = Some(addr);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    FakeHub { addr, state, _stop: stop }
}

fn error(status: StatusCode, code: &str) -> Response {
    (status, [("x-error-code", code.to_string())], format!("{{\"error\":\"{code}\"}}")).into_response()
}

fn authorized(state: &HubState, headers: &HeaderMap) -> bool {
    let faults = state.faults.lock().unwrap();
    match &faults.token {
        None => true,
        Some(token) => headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {token}")),
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", sha2::Sha256::digest(bytes))
}

fn git_sha1_hex(bytes: &[u8]) -> String {
    let mut h = sha1::Sha1::new();
    h.update(format!("blob {}\0", bytes.len()).as_bytes());
    h.update(bytes);
    format!("{:x}", h.finalize())
}

async fn repo_info(
    State(state): State<Arc<HubState>>,
    UrlPath((org, name, rev)): UrlPath<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&state, &headers) {
        return error(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    let id = format!("{org}/{name}");
    let repos = state.repos.lock().unwrap();
    let Some(repo) = repos.get(&id) else { return error(StatusCode::NOT_FOUND, "RepoNotFound") };
    if !repo.revisions.contains(&rev) && rev != repo.commit {
        return error(StatusCode::NOT_FOUND, "RevisionNotFound");
    }
    let siblings: Vec<serde_json::Value> = repo.files.keys().map(|f| serde_json::json!({ "rfilename": f })).collect();
    let body = serde_json::json!({
        "_id": "0", "id": id, "modelId": id, "sha": repo.commit, "private": false, "disabled": false, "gated": false,
        "downloads": 0, "likes": 0, "tags": [], "siblings": siblings, "lastModified": "2026-01-01T00:00:00.000Z",
    });
    axum::Json(body).into_response()
}

async fn resolve(
    State(state): State<Arc<HubState>>,
    method: Method,
    UrlPath((org, name, rev, path)): UrlPath<(String, String, String, String)>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&state, &headers) {
        return error(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    let id = format!("{org}/{name}");
    let (commit, bytes) = {
        let repos = state.repos.lock().unwrap();
        let Some(repo) = repos.get(&id) else { return error(StatusCode::NOT_FOUND, "RepoNotFound") };
        if !repo.revisions.contains(&rev) && rev != repo.commit {
            return error(StatusCode::NOT_FOUND, "RevisionNotFound");
        }
        if state.faults.lock().unwrap().hidden.as_deref() == Some(path.as_str()) {
            return error(StatusCode::NOT_FOUND, "EntryNotFound");
        }
        let Some(bytes) = repo.files.get(&path) else { return error(StatusCode::NOT_FOUND, "EntryNotFound") };
        (repo.commit.clone(), bytes.clone())
    };
    if bytes.len() >= LFS_THRESHOLD {
        let sha = sha256_hex(&bytes);
        let addr = state.addr.lock().unwrap().unwrap();
        let location = format!("http://{addr}/cdn/{id}/{sha}/{path}");
        return Response::builder()
            .status(StatusCode::FOUND)
            .header(header::LOCATION, location)
            .header("x-repo-commit", commit)
            .header("x-linked-etag", format!("\"{sha}\""))
            .header("x-linked-size", bytes.len().to_string())
            .header(header::ETAG, format!("\"{}\"", git_sha1_hex(&bytes)))
            .body(Body::empty())
            .unwrap();
    }
    let etag = if state.faults.lock().unwrap().no_checksum.as_deref() == Some(path.as_str()) {
        "\"opaque-etag-1\"".to_string()
    } else {
        format!("\"{}\"", git_sha1_hex(&bytes))
    };
    if method == Method::HEAD {
        return Response::builder()
            .header("x-repo-commit", commit)
            .header(header::ETAG, etag)
            .header(header::CONTENT_LENGTH, bytes.len().to_string())
            .body(Body::empty())
            .unwrap();
    }
    let mut response = content(&state, &path, bytes, &headers);
    response.headers_mut().insert("x-repo-commit", commit.parse().unwrap());
    response.headers_mut().insert(header::ETAG, etag.parse().unwrap());
    response
}

async fn cdn(
    State(state): State<Arc<HubState>>,
    UrlPath((org, name, sha, path)): UrlPath<(String, String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let bytes = {
        let repos = state.repos.lock().unwrap();
        let found = repos.get(&format!("{org}/{name}")).and_then(|r| r.files.get(&path)).filter(|b| sha256_hex(b) == sha);
        match found {
            Some(b) => b.clone(),
            None => return error(StatusCode::NOT_FOUND, "NoSuchKey"),
        }
    };
    content(&state, &path, bytes, &headers)
}

/// The file's bytes from the requested offset, with the configured faults applied.
fn content(state: &HubState, path: &str, mut bytes: Vec<u8>, headers: &HeaderMap) -> Response {
    let start = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<usize>().ok());
    let total = bytes.len();
    let (status, from) = match start {
        Some(s) if s < total => (StatusCode::PARTIAL_CONTENT, s),
        Some(_) => return StatusCode::RANGE_NOT_SATISFIABLE.into_response(),
        None => (StatusCode::OK, 0),
    };
    state.requests.lock().unwrap().push((path.to_string(), from as u64));
    let mut faults = state.faults.lock().unwrap();
    if faults.corrupt.as_deref() == Some(path) {
        let middle = total / 2;
        bytes[middle] ^= 0xff;
    }
    if let Some((_, extra)) = faults.oversize.as_ref().filter(|(file, _)| file == path) {
        bytes.extend(std::iter::repeat_n(0u8, *extra));
    }
    let total = bytes.len();
    let slow = faults.slow;
    let mut cut = None;
    if let Some((file, after, times)) = &mut faults.drop_after {
        if file == path && *times > 0 {
            *times -= 1;
            cut = Some(*after);
        }
    }
    drop(faults);
    let body: Vec<u8> = bytes[from..].to_vec();
    let length = body.len();
    let sent = cut.map_or(length, |c| c.min(length));
    *state.served.lock().unwrap().entry(path.to_string()).or_default() += sent as u64;
    // The body is streamed in 64 KiB chunks; a cut ends it with an error, which makes the server
    // abort the connection mid-body (the client sees fewer bytes than Content-Length).
    let mut chunks: Vec<Result<Vec<u8>, std::io::Error>> = body[..sent].chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
    if sent < length {
        chunks.push(Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "injected drop")));
    }
    let mut response =
        Response::builder().status(status).header(header::CONTENT_LENGTH, length.to_string()).header(header::ACCEPT_RANGES, "bytes");
    if status == StatusCode::PARTIAL_CONTENT {
        response = response.header(header::CONTENT_RANGE, format!("bytes {from}-{}/{total}", total - 1));
    }
    use futures::StreamExt;
    let stream = futures::stream::iter(chunks).then(move |chunk| async move {
        if slow {
            tokio::time::sleep(std::time::Duration::from_millis(40)).await;
        }
        chunk
    });
    response.body(Body::from_stream(stream)).unwrap()
}
