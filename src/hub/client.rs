//! Talking to a Hugging Face hub (or anything at `HF_ENDPOINT` that speaks its protocol): the
//! repository's file list, one file's metadata from a `HEAD` on its resolve URL, and a
//! resumable download of its content.

use std::path::Path;
use std::time::Duration;

use reqwest::header::{HeaderMap, ACCEPT_ENCODING, AUTHORIZATION, CONTENT_LENGTH, ETAG, LOCATION, RANGE};
use reqwest::StatusCode;
use tokio::io::AsyncWriteExt;

use super::cache::{check_commit, check_etag};
use super::HubError;

pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// `HF_ENDPOINT`, as `huggingface_hub` reads it.
pub fn env_endpoint(get: &impl Fn(&str) -> Option<String>) -> Option<String> {
    get("HF_ENDPOINT").map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

/// `HF_TOKEN`, else `HUGGING_FACE_HUB_TOKEN`, else the token file `huggingface-cli login` writes
/// under `HF_HOME`.
pub fn env_token(get: &impl Fn(&str) -> Option<String>) -> Option<String> {
    let non_empty = |k: &str| get(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    non_empty("HF_TOKEN").or_else(|| non_empty("HUGGING_FACE_HUB_TOKEN")).or_else(|| {
        let home = non_empty("HF_HOME").map(std::path::PathBuf::from).or_else(|| dirs::home_dir().map(|h| h.join(".cache/huggingface")))?;
        std::fs::read_to_string(home.join("token")).ok().map(|t| t.trim().to_string()).filter(|t| !t.is_empty())
    })
}

/// The hub's answer about a repository at a revision.
#[derive(Debug, Clone, PartialEq)]
pub struct RepoInfo {
    pub commit: String,
    pub files: Vec<String>,
}

/// What a `HEAD` on a file's resolve URL says.
#[derive(Debug, Clone, PartialEq)]
pub struct FileMeta {
    pub path: String,
    pub commit: String,
    /// sha256 for LFS files, the git blob sha1 for small ones; the blob's name in the cache.
    pub etag: String,
    pub size: u64,
    /// Where the content is: the resolve URL itself, or the CDN it redirects to.
    pub url: String,
}

pub struct HubClient {
    endpoint: String,
    token: Option<String>,
    /// For metadata: redirects are read, not followed (the CDN answer has no hub headers).
    no_redirects: reqwest::Client,
    /// For content: follows redirects; reqwest drops `Authorization` when the host changes.
    content: reqwest::Client,
}

impl HubClient {
    pub fn new(endpoint: &str, token: Option<String>) -> Result<Self, HubError> {
        let builder = || {
            reqwest::Client::builder()
                .user_agent(concat!("easel/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(Duration::from_secs(15))
                .read_timeout(Duration::from_secs(60))
        };
        let build_error = |e: reqwest::Error| HubError::Protocol(format!("cannot create the HTTP client: {e}"));
        Ok(Self {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            token: token.filter(|t| !t.is_empty()),
            no_redirects: builder().redirect(reqwest::redirect::Policy::none()).build().map_err(build_error)?,
            content: builder().build().map_err(build_error)?,
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(token) => request.header(AUTHORIZATION, format!("Bearer {token}")),
            None => request,
        }
    }

    fn transport_error(&self, e: reqwest::Error) -> HubError {
        if e.is_connect() || e.is_timeout() {
            HubError::Unreachable { endpoint: self.endpoint.clone(), detail: root_cause(&e) }
        } else {
            HubError::Protocol(format!("request to {} failed: {}", self.endpoint, root_cause(&e)))
        }
    }

    fn status_error(&self, status: StatusCode, repo_id: &str, what: String) -> HubError {
        match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                HubError::Unauthorized { repo_id: repo_id.to_string(), had_token: self.has_token() }
            }
            StatusCode::NOT_FOUND => HubError::NotFound { what },
            other => HubError::Protocol(format!("the hub answered {other} for {what}")),
        }
    }

    /// The commit `revision` points to and the repository's file list.
    pub async fn repo_info(&self, repo_id: &str, revision: &str) -> Result<RepoInfo, HubError> {
        let url = format!("{}/api/models/{repo_id}/revision/{}", self.endpoint, quote(revision, false));
        let response = self.authorized(self.content.get(&url)).send().await.map_err(|e| self.transport_error(e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(self.status_error(status, repo_id, format!("repository {repo_id} at revision {revision}")));
        }
        #[derive(serde::Deserialize)]
        struct Sibling {
            rfilename: String,
        }
        #[derive(serde::Deserialize)]
        struct Answer {
            sha: String,
            #[serde(default)]
            siblings: Vec<Sibling>,
        }
        let answer: Answer =
            response.json().await.map_err(|e| HubError::Protocol(format!("unexpected answer from {url}: {}", root_cause(&e))))?;
        check_commit(&answer.sha)?;
        Ok(RepoInfo { commit: answer.sha, files: answer.siblings.into_iter().map(|s| s.rfilename).collect() })
    }

    pub fn resolve_url(&self, repo_id: &str, revision: &str, path: &str) -> String {
        format!("{}/{repo_id}/resolve/{}/{}", self.endpoint, quote(revision, false), quote(path, true))
    }

    /// `HEAD` on the resolve URL: commit, etag, size, and where the bytes are. Relative redirects
    /// (a renamed repo) are followed; an absolute one is the CDN location for the content.
    pub async fn file_meta(&self, repo_id: &str, revision: &str, path: &str) -> Result<FileMeta, HubError> {
        let mut url = self.resolve_url(repo_id, revision, path);
        for _ in 0..5 {
            let request = self.no_redirects.head(&url).header(ACCEPT_ENCODING, "identity");
            let response = self.authorized(request).send().await.map_err(|e| self.transport_error(e))?;
            let status = response.status();
            let headers = response.headers();
            let location = header(headers, LOCATION.as_str());
            if status.is_redirection() {
                if let Some(relative) = location.as_deref().filter(|l| l.starts_with('/')) {
                    if header(headers, "x-linked-etag").is_none() {
                        url = format!("{}{relative}", self.endpoint);
                        continue;
                    }
                }
            } else if !status.is_success() {
                return Err(self.status_error(status, repo_id, format!("file {path} in {repo_id} at revision {revision}")));
            }
            let missing = |name: &str| HubError::Protocol(format!("the hub's answer for {path} has no {name} header"));
            let commit = header(headers, "x-repo-commit").ok_or_else(|| missing("X-Repo-Commit"))?;
            check_commit(&commit)?;
            let etag = header(headers, "x-linked-etag").or_else(|| header(headers, ETAG.as_str())).ok_or_else(|| missing("ETag"))?;
            let etag = etag.trim_start_matches("W/").trim_matches('"').to_string();
            check_etag(&etag)?;
            let size = header(headers, "x-linked-size")
                .or_else(|| (!status.is_redirection()).then(|| header(headers, CONTENT_LENGTH.as_str())).flatten())
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| missing("X-Linked-Size"))?;
            let content_url = match location.filter(|_| status.is_redirection()) {
                Some(l) if l.starts_with('/') => format!("{}{l}", self.endpoint),
                Some(l) => l,
                None => url.clone(),
            };
            return Ok(FileMeta { path: path.to_string(), commit, etag, size, url: content_url });
        }
        Err(HubError::Protocol(format!("too many redirects for {path} in {repo_id}")))
    }

    /// Downloads `meta`'s content into `dest`, resuming from the bytes already there (a `Range`
    /// request; a server that answers 200 instead of 206 restarts it). `on_progress` hears the
    /// bytes on disk after every chunk. Returns once the file has `meta.size` bytes.
    pub async fn download(
        &self,
        repo_id: &str,
        meta: &FileMeta,
        dest: &Path,
        on_progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<(), HubError> {
        let disk = |e: std::io::Error| HubError::from_io(dest, e);
        let mut have = tokio::fs::metadata(dest).await.map(|m| m.len()).unwrap_or(0);
        if have > meta.size {
            have = 0;
        }
        if have == meta.size {
            return Ok(());
        }
        let mut request = self.content.get(&meta.url).header(ACCEPT_ENCODING, "identity");
        if meta.url.starts_with(&self.endpoint) {
            request = self.authorized(request);
        }
        if have > 0 {
            request = request.header(RANGE, format!("bytes={have}-"));
        }
        let mut response = request.send().await.map_err(|e| self.transport_error(e))?;
        let status = response.status();
        let resumed = status == StatusCode::PARTIAL_CONTENT && have > 0;
        if !status.is_success() {
            return Err(self.status_error(status, repo_id, format!("file {} in {repo_id}", meta.path)));
        }
        if resumed {
            // The part must start exactly where the file on disk ends, or appending would corrupt it.
            let range = header(response.headers(), "content-range").unwrap_or_default();
            if !range.starts_with(&format!("bytes {have}-")) {
                return Err(HubError::Protocol(format!(
                    "the server answered a resume of {} from byte {have} with range {range:?}",
                    meta.path
                )));
            }
        }
        if !resumed {
            have = 0;
        }
        let file =
            tokio::fs::OpenOptions::new().create(true).write(true).truncate(!resumed).append(resumed).open(dest).await.map_err(disk)?;
        // Network chunks are small (~16 KiB); batch them so each disk write is one blocking call.
        // (A cancelled pull loses at most this buffer per file from what it can resume.)
        let mut file = tokio::io::BufWriter::with_capacity(256 << 10, file);
        on_progress(have);
        loop {
            let chunk = match response.chunk().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(e) => {
                    file.flush().await.map_err(disk)?;
                    return Err(HubError::Interrupted { file: meta.path.clone(), have, size: meta.size, detail: root_cause(&e) });
                }
            };
            if have + chunk.len() as u64 > meta.size {
                // More than the hub said the file holds: never let a server fill the disk.
                drop(file);
                let _ = tokio::fs::remove_file(dest).await;
                return Err(HubError::Protocol(format!(
                    "{} came with more than its {} bytes; the download was discarded",
                    meta.path, meta.size
                )));
            }
            file.write_all(&chunk).await.map_err(disk)?;
            have += chunk.len() as u64;
            on_progress(have);
        }
        file.flush().await.map_err(disk)?;
        file.get_ref().sync_all().await.map_err(disk)?;
        if have != meta.size {
            return Err(HubError::Interrupted {
                file: meta.path.clone(),
                have,
                size: meta.size,
                detail: "the connection ended early".into(),
            });
        }
        Ok(())
    }
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

/// The innermost error message (reqwest's outer ones just say "error sending request").
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut inner = e;
    while let Some(source) = inner.source() {
        inner = source;
    }
    if std::ptr::addr_eq(inner, e) {
        e.to_string()
    } else {
        format!("{e}: {inner}")
    }
}

/// Percent-encodes like Python's `urllib.parse.quote`: unreserved characters stay, `/` stays
/// only when `keep_slash` (file paths keep it, revisions such as `refs/pr/1` do not).
fn quote(text: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        let c = byte as char;
        if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~') || (keep_slash && c == '/') {
            out.push(c);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_matches_python_urllib() {
        assert_eq!(quote("refs/pr/1", false), "refs%2Fpr%2F1");
        assert_eq!(quote("unet/model.onnx", true), "unet/model.onnx");
        assert_eq!(quote("a b+c", true), "a%20b%2Bc");
    }

    #[test]
    fn token_comes_from_the_environment_in_huggingface_hub_order() {
        let env =
            |pairs: &'static [(&'static str, &'static str)]| move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string());
        assert_eq!(env_token(&env(&[("HF_TOKEN", "t1"), ("HUGGING_FACE_HUB_TOKEN", "t2")])).as_deref(), Some("t1"));
        assert_eq!(env_token(&env(&[("HUGGING_FACE_HUB_TOKEN", "t2"), ("HF_HOME", "/nonexistent")])).as_deref(), Some("t2"));
        assert_eq!(env_token(&env(&[("HF_HOME", "/nonexistent"), ("HF_TOKEN", " ")])), None);
        let home = std::env::temp_dir().join(format!("easel-hf-home-{}", std::process::id()));
        std::fs::create_dir_all(&home).unwrap();
        std::fs::write(home.join("token"), "hf_saved\n").unwrap();
        let home_str: &'static str = Box::leak(home.to_string_lossy().into_owned().into_boxed_str());
        let pairs: &'static [(&'static str, &'static str)] = Box::leak(Box::new([("HF_HOME", home_str)]));
        assert_eq!(env_token(&env(pairs)).as_deref(), Some("hf_saved"));
        let client = HubClient::new("http://127.0.0.1:9/", Some(String::new())).unwrap();
        assert_eq!((client.endpoint(), client.has_token()), ("http://127.0.0.1:9", false));
    }
}
