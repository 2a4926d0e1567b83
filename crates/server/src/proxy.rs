//! llama-server's CORS proxy (`--ui-mcp-proxy`): `GET`/`POST /cors-proxy?url=…` forwards a
//! request for a browser page that cannot reach the target itself. Only the headers the client
//! names explicitly (`x-llama-server-proxy-header-NAME: value`) travel; its own credentials
//! (`Authorization`, cookies, API keys) never do. Off by default: then a 403.

use std::collections::HashMap;

use axum::body::{Body as HttpBody, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use serde_json::json;

use crate::error::ApiError;
use crate::http::AppState;

/// The prefix that marks a header for the target.
const FORWARD: &str = "x-llama-server-proxy-header-";

/// An `http://` target: host, port, and path with its query.
#[derive(Debug, PartialEq)]
struct Target {
    host: String,
    port: u16,
    path: String,
}

/// Parses the target as llama.cpp's `common_http_parse_url` does; its messages.
fn parse(url: &str) -> Result<Target, ApiError> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| ApiError::server("invalid URL: no scheme"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let host_port = match authority.rsplit_once('@') {
        Some((auth, hp)) => {
            if auth.contains(':') {
                return Err(ApiError::server(
                    "authentication in target URL is not supported",
                ));
            }
            hp
        }
        None => authority,
    };
    if scheme != "http" && scheme != "https" {
        return Err(ApiError::server(format!(
            "unsupported URL scheme: {scheme}"
        )));
    }
    let default_port = if scheme == "https" { 443 } else { 80 };
    let (host, port) = if let Some(inner) = host_port.strip_prefix('[') {
        let (h, after) = inner
            .split_once(']')
            .ok_or_else(|| ApiError::server(format!("invalid IPv6 URL authority: {host_port}")))?;
        (h, after.strip_prefix(':'))
    } else {
        match host_port.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host_port, None),
        }
    };
    let port = match port {
        None | Some("") => default_port,
        Some(p) => p
            .parse()
            .map_err(|_| ApiError::server(format!("invalid port in URL: {p}")))?,
    };
    if host.is_empty() {
        return Err(ApiError::server("invalid target URL: missing host"));
    }
    if scheme == "https" {
        // llama-server built without TLS (as the reference build is) says the same.
        return Err(ApiError::server(
            "HTTPS requested but this server has no TLS client",
        ));
    }
    Ok(Target {
        host: host.to_owned(),
        port,
        path: path.to_owned(),
    })
}

/// Headers of the target's answer that the proxy sets itself (llama-server strips the same).
fn stripped(name: &str) -> bool {
    matches!(
        name,
        "server" | "transfer-encoding" | "content-length" | "keep-alive" | "connection"
    ) || name.starts_with("access-control-")
}

pub(crate) async fn cors_proxy(
    State(app): AppState,
    method: Method,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    if !app.config.cors_proxy {
        return Ok((
            StatusCode::FORBIDDEN,
            axum::Json(json!({ "error": {
                "message": "this feature is disabled",
                "type": "feature_disabled",
            }})),
        )
            .into_response());
    }
    let body = crate::http::read_body_bytes(body)?;
    let url = q.get("url").map(String::as_str).unwrap_or_default();
    let target = parse(url)?;
    let mut req = Request::builder().method(method.clone()).uri(&target.path);
    let host = if target.host.contains(':') {
        format!("[{}]:{}", target.host, target.port)
    } else {
        format!("{}:{}", target.host, target.port)
    };
    req = req.header(header::HOST, &host);
    for (name, value) in &headers {
        let Some(name) = name.as_str().strip_prefix(FORWARD) else {
            continue;
        };
        // The body is sent whole, uncompressed answers only, as llama-server's proxy.
        if name.is_empty()
            || matches!(
                name,
                "accept-encoding" | "transfer-encoding" | "content-length" | "host"
            )
        {
            continue;
        }
        if let Ok(n) = HeaderName::from_bytes(name.as_bytes()) {
            req = req.header(n, value);
        }
    }
    let req = req
        .body(HttpBody::from(if method == Method::POST {
            body
        } else {
            Bytes::new()
        }))
        .map_err(|e| ApiError::server(format!("invalid proxied request: {e}")))?;
    let timeout = app.config.timeout;
    let connect = tokio::net::TcpStream::connect((target.host.as_str(), target.port));
    let stream = tokio::time::timeout(timeout, connect)
        .await
        .map_err(|_| ApiError::server(format!("cannot connect to {host}: timed out")))?
        .map_err(|e| ApiError::server(format!("cannot connect to {host}: {e}")))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ApiError::server(format!("proxy to {host}: {e}")))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let answer = tokio::time::timeout(timeout, sender.send_request(req))
        .await
        .map_err(|_| ApiError::server(format!("proxy to {host}: timed out")))?
        .map_err(|e| ApiError::server(format!("proxy to {host}: {e}")))?;
    let (parts, incoming) = answer.into_parts();
    let mut resp = Response::new(HttpBody::new(incoming));
    *resp.status_mut() = parts.status;
    for (name, value) in &parts.headers {
        if !stripped(name.as_str()) {
            resp.headers_mut().append(name.clone(), value.clone());
        }
    }
    if !resp.headers().contains_key(header::CONTENT_TYPE) {
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_as_llama_cpps() {
        let t = parse("http://127.0.0.1:8123/capture?x=1").unwrap();
        assert_eq!(
            t,
            Target {
                host: "127.0.0.1".into(),
                port: 8123,
                path: "/capture?x=1".into()
            }
        );
        let t = parse("http://[::1]/").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 80));
        assert_eq!(parse("http://example.org").unwrap().path, "/");
        for (bad, msg) in [
            ("example.org", "invalid URL: no scheme"),
            ("ftp://x/", "unsupported URL scheme: ftp"),
            (
                "http://u:p@x/",
                "authentication in target URL is not supported",
            ),
            ("http:///x", "invalid target URL: missing host"),
            ("http://x:99999/", "invalid port in URL: 99999"),
        ] {
            assert_eq!(parse(bad).unwrap_err().message, msg, "{bad}");
        }
    }
}
