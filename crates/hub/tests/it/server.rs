//! A local Hugging Face Hub for tests: the API endpoints hearth and huggingface_hub use, served
//! from repositories built in memory, on 127.0.0.1 with an OS-chosen port, with switches that
//! inject faults. Shared with the `cli` tests (`#[path]`), so it depends only on dev-dependencies
//! both crates have.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use sha1::Digest as _;

/// A file in a fixture repository.
#[derive(Clone)]
pub struct FileSpec {
    pub path: String,
    pub data: Arc<Vec<u8>>,
    /// Served as an LFS file (sha256 `lfs.oid`, redirected to the "CDN").
    pub lfs: bool,
    sha256: String,
    git_oid: String,
}

impl FileSpec {
    pub fn new(path: &str, data: Vec<u8>, lfs: bool) -> FileSpec {
        let mut h = sha1::Sha1::new();
        h.update(format!("blob {}\0", data.len()).as_bytes());
        h.update(&data);
        FileSpec {
            path: path.to_string(),
            sha256: hex(&sha2::Sha256::digest(&data)),
            git_oid: hex(&h.finalize()),
            data: Arc::new(data),
            lfs,
        }
    }
    pub fn sha256(&self) -> String {
        self.sha256.clone()
    }
    pub fn git_oid(&self) -> String {
        self.git_oid.clone()
    }
    /// The blob name huggingface_hub gives this file in its cache.
    pub fn etag(&self) -> String {
        if self.lfs {
            self.sha256()
        } else {
            self.git_oid()
        }
    }
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fixture repository.
#[derive(Clone)]
pub struct RepoSpec {
    pub id: String,
    pub commit: String,
    pub files: Vec<FileSpec>,
    /// File downloads answer 401 (`X-Error-Code: GatedRepo`) unless the request carries this
    /// token.
    pub gated_token: Option<String>,
}

/// Switches that make the server misbehave.
#[derive(Default)]
pub struct Faults {
    /// How many of the next file bodies are cut off at half the file.
    pub cut_at_half: AtomicUsize,
    /// Serve every file with one byte changed.
    pub corrupt: AtomicBool,
    /// Answer Range requests with the whole file (200).
    pub ignore_range: AtomicBool,
}

/// A request the server saw.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub range: Option<String>,
    pub auth: bool,
}

struct Shared {
    repos: Vec<RepoSpec>,
    faults: Faults,
    seen: Mutex<Vec<Seen>>,
    base: String,
    cdn: String,
    page_size: usize,
}

/// The running server; stops when dropped.
pub struct HubServer {
    pub url: String,
    /// The other origin LFS downloads are redirected to.
    pub cdn: String,
    shared: Arc<Shared>,
    _rt: tokio::runtime::Runtime,
}

impl HubServer {
    pub fn start(repos: Vec<RepoSpec>) -> HubServer {
        // Two listeners: the Hub, and a "CDN" on another origin that LFS downloads redirect to
        // (as the real Hub's do), so that clients must not carry the token there.
        let bind = || {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.set_nonblocking(true).unwrap();
            let url = format!("http://{}", l.local_addr().unwrap());
            (l, url)
        };
        let (listener, url) = bind();
        let (cdn_listener, cdn) = bind();
        let shared = Arc::new(Shared {
            repos,
            faults: Faults::default(),
            seen: Mutex::new(Vec::new()),
            base: url.clone(),
            cdn,
            page_size: 4,
        });
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_io()
            .build()
            .unwrap();
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        for l in [listener, cdn_listener] {
            let app = app.clone();
            rt.spawn(async move {
                let l = tokio::net::TcpListener::from_std(l).unwrap();
                axum::serve(l, app).await
            });
        }
        // The socket is bound and listening already: connections queue until the task runs.
        HubServer {
            url,
            cdn: shared.cdn.clone(),
            shared,
            _rt: rt,
        }
    }

    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    /// File bodies served (GETs of `/resolve/` without a redirect, and of the CDN).
    pub fn file_gets(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| {
                s.method == "GET"
                    && (s.path.starts_with("/cdn/")
                        || (s.path.contains("/resolve/") && !self.is_lfs_resolve(&s.path)))
            })
            .collect()
    }

    fn is_lfs_resolve(&self, path: &str) -> bool {
        self.shared.repos.iter().any(|r| {
            r.files
                .iter()
                .any(|f| f.lfs && path.ends_with(&format!("/{}", f.path)))
        })
    }

    pub fn clear_seen(&self) {
        self.shared.seen.lock().unwrap().clear();
    }
}

fn status(code: StatusCode, error_code: &str) -> Response {
    let mut r = (code, error_code.to_string()).into_response();
    if !error_code.is_empty() {
        r.headers_mut()
            .insert("x-error-code", error_code.parse().unwrap());
    }
    r
}

async fn handle(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let path = uri.path().to_string();
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    s.seen.lock().unwrap().push(Seen {
        method: method.to_string(),
        path: path.clone(),
        range: range.clone(),
        auth: auth.is_some(),
    });
    if let Some(sha) = path.strip_prefix("/cdn/") {
        let Some(f) = s
            .repos
            .iter()
            .flat_map(|r| &r.files)
            .find(|f| f.lfs && f.sha256() == sha)
        else {
            return status(StatusCode::NOT_FOUND, "");
        };
        return serve_bytes(&s, f, range.as_deref(), &method, HeaderMap::new());
    }
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (api, rest) = match parts.as_slice() {
        ["api", "models", rest @ ..] => (true, rest),
        rest => (false, rest),
    };
    let [org, name, rest @ ..] = rest else {
        return status(StatusCode::NOT_FOUND, "");
    };
    let id = format!("{org}/{name}");
    let Some(repo) = s.repos.iter().find(|r| r.id == id) else {
        return status(StatusCode::UNAUTHORIZED, "RepoNotFound");
    };
    // As on the Hub, a gated repository's metadata is public; its files are not.
    if let Some(t) = &repo.gated_token
        && !api
        && auth.as_deref() != Some(&format!("Bearer {t}"))
    {
        return status(StatusCode::UNAUTHORIZED, "GatedRepo");
    }
    let rev_ok = |rev: &str| rev == "main" || rev == repo.commit;
    match (api, rest) {
        (true, ["revision", rev]) if rev_ok(rev) => {
            let siblings: Vec<_> = repo
                .files
                .iter()
                .map(|f| serde_json::json!({ "rfilename": f.path }))
                .collect();
            json(serde_json::json!({ "id": repo.id, "sha": repo.commit, "siblings": siblings }))
        }
        (true, ["tree", rev]) if rev_ok(rev) => {
            let mut entries = Vec::new();
            let mut dirs = std::collections::BTreeSet::new();
            for f in &repo.files {
                if let Some((d, _)) = f.path.rsplit_once('/')
                    && dirs.insert(d.to_string())
                {
                    entries.push(serde_json::json!({
                        "type": "directory", "oid": "0".repeat(40), "size": 0, "path": d
                    }));
                }
                let mut e = serde_json::json!({
                    "type": "file", "oid": f.git_oid(), "size": f.data.len(), "path": f.path
                });
                if f.lfs {
                    e["lfs"] = serde_json::json!({
                        "oid": f.sha256(), "size": f.data.len(), "pointerSize": 134
                    });
                }
                entries.push(e);
            }
            // Pages of `page_size` entries, linked as the Hub does.
            let cursor: usize = uri
                .query()
                .unwrap_or("")
                .split('&')
                .find_map(|kv| kv.strip_prefix("cursor="))
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            let end = (cursor + s.page_size).min(entries.len());
            let mut r = json(serde_json::Value::Array(
                entries[cursor.min(end)..end].to_vec(),
            ));
            if end < entries.len() {
                let next = format!(
                    "<{}/api/models/{}/tree/{rev}?recursive=true&cursor={end}>; rel=\"next\"",
                    s.base, repo.id
                );
                r.headers_mut().insert(header::LINK, next.parse().unwrap());
            }
            r
        }
        (true, _) => status(StatusCode::NOT_FOUND, "RevisionNotFound"),
        (false, ["resolve", rev, file @ ..]) if rev_ok(rev) => {
            let file = file.join("/");
            let Some(f) = repo.files.iter().find(|f| f.path == file) else {
                return status(StatusCode::NOT_FOUND, "EntryNotFound");
            };
            let mut h = HeaderMap::new();
            h.insert("x-repo-commit", repo.commit.parse().unwrap());
            if f.lfs {
                h.insert(
                    "x-linked-etag",
                    format!("\"{}\"", f.sha256()).parse().unwrap(),
                );
                h.insert("x-linked-size", f.data.len().into());
                h.insert(
                    header::ETAG,
                    format!("\"{}\"", f.git_oid()).parse().unwrap(),
                );
                h.insert(
                    header::LOCATION,
                    format!("{}/cdn/{}", s.cdn, f.sha256()).parse().unwrap(),
                );
                let mut r = StatusCode::FOUND.into_response();
                r.headers_mut().extend(h);
                return r;
            }
            h.insert(
                header::ETAG,
                format!("\"{}\"", f.git_oid()).parse().unwrap(),
            );
            serve_bytes(&s, f, range.as_deref(), &method, h)
        }
        _ => status(StatusCode::NOT_FOUND, "EntryNotFound"),
    }
}

fn json(v: serde_json::Value) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(&v).unwrap(),
    )
        .into_response()
}

/// The file's bytes, honouring `Range: bytes=N-`, with the faults applied.
fn serve_bytes(
    s: &Shared,
    f: &FileSpec,
    range: Option<&str>,
    method: &Method,
    mut h: HeaderMap,
) -> Response {
    let mut data = f.data.clone();
    if s.faults.corrupt.load(Ordering::SeqCst) {
        let mid = data.len() / 2;
        Arc::make_mut(&mut data)[mid] ^= 0x55;
    }
    let len = data.len();
    let start = range
        .filter(|_| !s.faults.ignore_range.load(Ordering::SeqCst))
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<usize>().ok());
    let (code, start) = match start {
        Some(n) if n >= len => {
            return status(StatusCode::RANGE_NOT_SATISFIABLE, "");
        }
        Some(n) => {
            h.insert(
                header::CONTENT_RANGE,
                format!("bytes {n}-{}/{len}", len - 1).parse().unwrap(),
            );
            (StatusCode::PARTIAL_CONTENT, n)
        }
        None => (StatusCode::OK, 0),
    };
    h.insert(header::ACCEPT_RANGES, "bytes".parse().unwrap());
    h.insert(header::CONTENT_LENGTH, (len - start).into());
    if method == Method::HEAD {
        return (code, h).into_response();
    }
    let half = len / 2;
    // Cut at half the file (a request that starts beyond it is cut at once).
    let cut = s
        .faults
        .cut_at_half
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    let body = if cut {
        let first = Bytes::from(data[start..half.max(start)].to_vec());
        // The half is sent, the stream pauses once (so it is flushed to the socket), then
        // fails, which makes hyper drop the connection short of its Content-Length.
        let steps = futures_util::stream::unfold(0, move |step| {
            let first = first.clone();
            async move {
                match step {
                    0 => Some((Ok(first), 1)),
                    1 => {
                        tokio::task::yield_now().await;
                        Some((Err(std::io::Error::other("connection cut by the test")), 2))
                    }
                    _ => None,
                }
            }
        });
        Body::from_stream(steps)
    } else {
        Body::from(data[start..].to_vec())
    };
    let mut r = (code, body).into_response();
    r.headers_mut().extend(h);
    r
}

/// A small GGUF file made by our writer: a name, an architecture and one F32 tensor of `n`
/// values (so files differ in size and content).
pub fn gguf_file(name: &str, n: u64) -> Vec<u8> {
    let mut b = gguf::Builder::new();
    b.set("general.architecture", gguf::Value::string("llama"))
        .unwrap();
    b.set("general.name", gguf::Value::string(name)).unwrap();
    let data: Vec<u8> = (0..n)
        .flat_map(|i| ((i as f32) * 0.5 + name.len() as f32).to_le_bytes())
        .collect();
    b.add_tensor("t", gguf::GgmlType::F32, &[n], data).unwrap();
    b.to_bytes()
}

pub const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// The fixture repository `test-org/tiny-GGUF`: several quants, a split model in a folder, a
/// multimodal projector and a README (not LFS).
pub fn tiny_repo() -> RepoSpec {
    let mut files = Vec::new();
    for (q, n) in [
        ("Q4_K_M", 16384),
        ("Q8_0", 20000),
        ("IQ4_XS", 3000),
        ("F16", 5000),
    ] {
        files.push(FileSpec::new(
            &format!("tiny-{q}.gguf"),
            gguf_file(q, n),
            true,
        ));
    }
    for i in 1..=3 {
        files.push(FileSpec::new(
            &format!("Q2_K/tiny-Q2_K-0000{i}-of-00003.gguf"),
            gguf_file(&format!("Q2_K part {i}"), 1000 + i),
            true,
        ));
    }
    files.push(FileSpec::new(
        "mmproj-tiny-f16.gguf",
        gguf_file("mmproj", 100),
        true,
    ));
    files.push(FileSpec::new(
        "README.md",
        b"---\nlicense: mit\n---\n# tiny\n".to_vec(),
        false,
    ));
    RepoSpec {
        id: "test-org/tiny-GGUF".into(),
        commit: COMMIT.into(),
        files,
        gated_token: None,
    }
}

/// An HTTP CONNECT proxy (what `HTTPS_PROXY` points at), recording the targets it tunnels to.
pub struct ConnectProxy {
    pub url: String,
    targets: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl ConnectProxy {
    pub fn start() -> ConnectProxy {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let targets = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (t, s) = (targets.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = conn else { continue };
                let t = t.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(client.try_clone().unwrap());
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap_or(0);
                    let target = match line.split_whitespace().collect::<Vec<_>>()[..] {
                        ["CONNECT", target, _] => target.to_string(),
                        _ => return,
                    };
                    // The rest of the request head.
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                            break;
                        }
                    }
                    t.lock().unwrap().push(target.clone());
                    let Ok(upstream) = std::net::TcpStream::connect(&target) else {
                        return;
                    };
                    let mut c = client;
                    c.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                        .unwrap();
                    let (mut c2, mut u2) = (c.try_clone().unwrap(), upstream.try_clone().unwrap());
                    let mut u = upstream;
                    // Bytes already buffered past the request head go upstream first.
                    let buffered = reader.buffer().to_vec();
                    u.write_all(&buffered).unwrap();
                    let up = std::thread::spawn(move || {
                        let _ = std::io::copy(&mut c2, &mut u);
                        let _ = u.shutdown(std::net::Shutdown::Write);
                    });
                    let _ = std::io::copy(&mut u2, &mut c);
                    let _ = c.shutdown(std::net::Shutdown::Write);
                    let _ = up.join();
                });
            }
        });
        ConnectProxy { url, targets, stop }
    }

    pub fn targets(&self) -> Vec<String> {
        self.targets.lock().unwrap().clone()
    }
}

impl Drop for ConnectProxy {
    fn drop(&mut self) {
        // Wake the accept loop so that it sees the flag and ends.
        self.stop.store(true, Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(self.url.trim_start_matches("http://"));
    }
}
