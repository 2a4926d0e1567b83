//! The Hub's HTTP API: a repository's commit for a revision, its file tree, and file downloads
//! (`/{repo}/resolve/{commit}/{path}`, whose redirects are followed here, one hop at a time, so
//! the token never leaves the endpoint's host and the first hop's `X-Linked-Etag` can be read).

use std::time::Duration;

use serde::Deserialize;

use crate::{Error, Options};

/// A file in a repository's tree.
#[derive(Clone, Debug, Deserialize)]
pub struct TreeEntry {
    #[serde(rename = "type")]
    pub kind: String,
    pub path: String,
    #[serde(default)]
    pub size: u64,
    /// The git blob id (sha1) — the etag of a non-LFS file.
    #[serde(default)]
    pub oid: Option<String>,
    #[serde(default)]
    pub lfs: Option<Lfs>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Lfs {
    /// sha256 of the content — the etag of an LFS file.
    pub oid: String,
    pub size: u64,
}

#[derive(Deserialize)]
struct ModelInfo {
    sha: Option<String>,
}

pub(crate) struct Client {
    agent: ureq::Agent,
    endpoint: String,
    token: Option<String>,
}

/// An open response body, with what the first hop said about the file.
pub(crate) struct Download {
    pub response: ureq::http::Response<ureq::Body>,
    /// `X-Linked-Etag` (else `ETag`) of the endpoint's own answer, unquoted.
    pub etag: Option<String>,
}

const MAX_JSON: u64 = 64 << 20;

impl Client {
    pub fn new(opts: &Options) -> Client {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            // A download that stalls this long is broken off, and resumed by download::blob.
            .timeout_per_read(Some(Duration::from_secs(60)))
            .user_agent(concat!("hearth/", env!("CARGO_PKG_VERSION")))
            .build();
        Client {
            agent: config.into(),
            endpoint: opts.endpoint.trim_end_matches('/').to_string(),
            token: opts.token.clone(),
        }
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The commit `revision` points at.
    pub fn commit(&self, repo: &str, revision: &str) -> Result<String, Error> {
        let url = format!("{}/api/models/{repo}/revision/{revision}", self.endpoint);
        let mut d = self.get(&url, None, repo)?;
        let body = read_json(&mut d.response, &url)?;
        let info: ModelInfo = serde_json::from_slice(&body).map_err(|e| protocol(&url, e))?;
        match info.sha {
            Some(sha) if crate::reference::is_commit(&sha) => Ok(sha),
            _ => Err(protocol(&url, "no commit hash (sha) in the answer")),
        }
    }

    /// Every file of the repository at `commit` (directories left out), following pagination.
    pub fn tree(&self, repo: &str, commit: &str) -> Result<Vec<TreeEntry>, Error> {
        let mut url = format!(
            "{}/api/models/{repo}/tree/{commit}?recursive=true",
            self.endpoint
        );
        let mut out = Vec::new();
        for _ in 0..1000 {
            let mut d = self.get(&url, None, repo)?;
            let next = next_link(&d.response);
            let body = read_json(&mut d.response, &url)?;
            let page: Vec<TreeEntry> =
                serde_json::from_slice(&body).map_err(|e| protocol(&url, e))?;
            out.extend(page.into_iter().filter(|e| e.kind == "file"));
            match next {
                Some(n) if n.starts_with(&format!("{}/", self.endpoint)) => url = n,
                Some(n) => return Err(protocol(&url, format!("next page on another host: {n}"))),
                None => return Ok(out),
            }
        }
        Err(protocol(&url, "more than 1000 pages"))
    }

    /// GETs `url` (from `offset` on, when given), following up to 10 redirects.
    pub fn get(&self, url: &str, offset: Option<u64>, repo: &str) -> Result<Download, Error> {
        let mut url = url.to_string();
        let mut etag = None;
        for hop in 0..10 {
            let mut req = self.agent.get(&url);
            if let Some(t) = self.token.as_deref().filter(|_| self.same_origin(&url)) {
                req = req.header("Authorization", format!("Bearer {t}"));
            }
            if let Some(o) = offset.filter(|&o| o > 0) {
                req = req.header("Range", format!("bytes={o}-"));
            }
            let response = req.call().map_err(|e| network(&url, e))?;
            if hop == 0 {
                etag = header(&response, "x-linked-etag")
                    .or_else(|| header(&response, "etag"))
                    .map(|e| unquote_etag(&e));
            }
            let status = response.status().as_u16();
            if matches!(status, 301 | 302 | 303 | 307 | 308) {
                let loc = header(&response, "location")
                    .ok_or_else(|| protocol(&url, "redirect without Location"))?;
                url = join_url(&url, &loc).ok_or_else(|| protocol(&url, "bad redirect"))?;
                continue;
            }
            if (200..300).contains(&status) {
                return Ok(Download { response, etag });
            }
            return Err(self.status_error(&response, &url, repo));
        }
        Err(protocol(&url, "more than 10 redirects"))
    }

    fn same_origin(&self, url: &str) -> bool {
        url == self.endpoint || url.starts_with(&format!("{}/", self.endpoint))
    }

    fn status_error(&self, r: &ureq::http::Response<ureq::Body>, url: &str, repo: &str) -> Error {
        let status = r.status().as_u16();
        let code = header(r, "x-error-code").unwrap_or_default();
        let what = match code.as_str() {
            "RepoNotFound" => Some(format!("repository {repo}")),
            "RevisionNotFound" => Some(format!("that revision of {repo}")),
            "EntryNotFound" => Some(format!("that file in {repo}")),
            _ if status == 404 => Some(url.to_string()),
            _ => None,
        };
        if let Some(what) = what {
            let hint = if self.token.is_none() && status == 401 {
                " (or it is private: set HF_TOKEN)"
            } else {
                ""
            };
            return Error::NotFound(format!("{what} not found on {}{hint}", self.endpoint));
        }
        if status == 401 || status == 403 {
            return Error::Gated {
                repo: repo.to_string(),
                url: format!("{}/{repo}", self.endpoint),
                had_token: self.token.is_some(),
            };
        }
        Error::Http {
            status,
            url: url.to_string(),
        }
    }
}

fn header(r: &ureq::http::Response<ureq::Body>, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// `W/"abc"` → `abc`.
pub(crate) fn unquote_etag(e: &str) -> String {
    e.trim()
        .trim_start_matches("W/")
        .trim_matches('"')
        .to_string()
}

fn read_json(r: &mut ureq::http::Response<ureq::Body>, url: &str) -> Result<Vec<u8>, Error> {
    r.body_mut()
        .with_config()
        .limit(MAX_JSON)
        .read_to_vec()
        .map_err(|e| network(url, e))
}

/// The `rel="next"` URL of a `Link` header (the Hub's pagination).
fn next_link(r: &ureq::http::Response<ureq::Body>) -> Option<String> {
    let link = header(r, "link")?;
    link.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        params
            .split(';')
            .any(|p| p.trim() == "rel=\"next\"")
            .then(|| {
                url.trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_string()
            })
    })
}

/// Resolves a `Location` against the URL it came from.
fn join_url(base: &str, loc: &str) -> Option<String> {
    if loc.starts_with("https://") || loc.starts_with("http://") {
        return Some(loc.to_string());
    }
    let scheme_end = base.find("://")? + 3;
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    if let Some(rest) = loc.strip_prefix("//") {
        return Some(format!("{}{rest}", &base[..scheme_end]));
    }
    if loc.starts_with('/') {
        return Some(format!("{}{loc}", &base[..host_end]));
    }
    let path = base[host_end..].split(['?', '#']).next().unwrap_or("");
    let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
    Some(format!(
        "{}{}{loc}",
        &base[..host_end],
        if dir.is_empty() { "/" } else { dir }
    ))
}

pub(crate) fn network(url: &str, e: impl std::fmt::Display) -> Error {
    Error::Network {
        url: url.to_string(),
        message: e.to_string(),
    }
}

pub(crate) fn protocol(url: &str, e: impl std::fmt::Display) -> Error {
    Error::Protocol {
        url: url.to_string(),
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_locations() {
        let b = "https://hf.co/org/repo/resolve/main/a.gguf";
        assert_eq!(join_url(b, "https://cdn/x").unwrap(), "https://cdn/x");
        assert_eq!(join_url(b, "/api/x").unwrap(), "https://hf.co/api/x");
        assert_eq!(
            join_url(b, "b.gguf").unwrap(),
            "https://hf.co/org/repo/resolve/main/b.gguf"
        );
        assert_eq!(join_url(b, "//cdn/y").unwrap(), "https://cdn/y");
        assert_eq!(unquote_etag("W/\"abc\""), "abc");
    }
}
