//! A real server on a loopback port and a small HTTP/1.1 client over `TcpStream`, so tests can
//! read a stream chunk by chunk and drop the connection mid-stream.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A server running SmolLM2, stopped when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    running: Option<server::Running>,
}

/// Waits (bounded) until `/health` at `addr` answers 200.
pub fn wait_healthy(addr: SocketAddr) {
    let t0 = Instant::now();
    loop {
        let ok = (|| -> std::io::Result<bool> {
            let mut s = TcpStream::connect(addr)?;
            write!(
                s,
                "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )?;
            let mut out = String::new();
            s.read_to_string(&mut out)?;
            Ok(out.starts_with("HTTP/1.1 200"))
        })();
        if ok.unwrap_or(false) {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "server not ready after 60 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A small configuration: one compute thread, a short context, llama-server's other defaults.
pub fn config() -> server::Config {
    let mut c = server::Config::new(test_models::path(test_models::SMOLLM2));
    c.port = 0;
    c.n_ctx = 2048;
    c.n_parallel = 2;
    c.n_threads = 1;
    c.n_batch = 256;
    c.metrics = true;
    c
}

impl TestServer {
    pub fn start(config: server::Config) -> TestServer {
        let running = server::start(config).expect("server starts");
        let addr = running.addrs[0];
        let s = TestServer {
            addr,
            running: Some(running),
        };
        s.wait_ready();
        s
    }

    fn wait_ready(&self) {
        wait_healthy(self.addr);
    }

    pub fn get(&self, path: &str) -> Response {
        self.request("GET", path, None, &[])
    }

    pub fn post(&self, path: &str, body: &Value) -> Response {
        self.request("POST", path, Some(body.to_string().as_bytes()), &[])
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        headers: &[(&str, &str)],
    ) -> Response {
        self.try_request(method, path, body, headers)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    fn try_request(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        headers: &[(&str, &str)],
    ) -> std::io::Result<Response> {
        let mut s = self.open(method, path, body, headers)?;
        let head = read_head(&mut s)?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw)?;
        let body = if head.chunked {
            let mut r = BufReader::new(&raw[..]);
            let mut out = Vec::new();
            while let Some(c) = read_chunk(&mut r)? {
                out.extend(c);
            }
            out
        } else {
            raw
        };
        Ok(Response {
            status: head.status,
            headers: head.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }

    fn open(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        headers: &[(&str, &str)],
    ) -> std::io::Result<BufReader<TcpStream>> {
        let mut s = TcpStream::connect(self.addr)?;
        s.set_read_timeout(Some(Duration::from_secs(120)))?;
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.addr
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        if let Some(b) = body {
            req.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                b.len()
            ));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes())?;
        if let Some(b) = body {
            // The server may answer (413) before reading everything.
            let _ = s.write_all(b);
        }
        Ok(BufReader::new(s))
    }

    /// Starts a streamed request; read it with [`Stream::next_event`].
    pub fn stream(&self, path: &str, body: &Value) -> Stream {
        let mut r = self
            .open("POST", path, Some(body.to_string().as_bytes()), &[])
            .expect("connect");
        let head = read_head(&mut r).expect("response head");
        assert_eq!(head.status, 200, "stream {path} answered {}", head.status);
        assert!(head.chunked, "a stream is chunked");
        Stream {
            r,
            buf: String::new(),
        }
    }

    pub fn slots(&self) -> Vec<Value> {
        self.get("/slots")
            .json()
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// A metric's value from `/metrics`.
    pub fn metric(&self, name: &str) -> f64 {
        let text = self.get("/metrics").body;
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("llamacpp:{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("metric {name} missing from\n{text}"))
    }

    /// Waits (bounded) until `cond` holds.
    pub fn wait_until(&self, what: &str, mut cond: impl FnMut(&TestServer) -> bool) {
        let t0 = Instant::now();
        while !cond(self) {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "timed out waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            let _ = r.shutdown();
        }
    }
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}), status {}: {}", self.status, self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Asserts an OpenAI-shaped error with this status and type; returns the error object.
    pub fn expect_error(&self, status: u16, kind: &str) -> Value {
        assert_eq!(self.status, status, "body: {}", self.body);
        let v = self.json();
        let e = &v["error"];
        assert_eq!(e["type"], kind, "body: {}", self.body);
        assert_eq!(e["code"], status, "body: {}", self.body);
        assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()));
        e.clone()
    }
}

struct Head {
    status: u16,
    headers: Vec<(String, String)>,
    chunked: bool,
}

fn read_head(r: &mut impl BufRead) -> std::io::Result<Head> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    Ok(Head {
        status,
        headers,
        chunked,
    })
}

fn read_chunk(r: &mut impl BufRead) -> std::io::Result<Option<Vec<u8>>> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let n = usize::from_str_radix(line.trim(), 16)
        .map_err(|_| std::io::Error::other(format!("bad chunk size {line:?}")))?;
    if n == 0 {
        return Ok(None);
    }
    let mut data = vec![0; n + 2];
    r.read_exact(&mut data)?;
    data.truncate(n);
    Ok(Some(data))
}

/// A response read as it streams.
pub struct Stream {
    r: BufReader<TcpStream>,
    buf: String,
}

impl Stream {
    /// The next line-delimited event: an SSE `data:` payload or an NDJSON line; `None` at
    /// the end.
    pub fn next_event(&mut self) -> Option<String> {
        loop {
            if let Some(i) = self.buf.find('\n') {
                let line: String = self.buf.drain(..=i).collect();
                let line = line.trim();
                if line.is_empty() {
                    continue;
                }
                return Some(line.strip_prefix("data: ").unwrap_or(line).to_owned());
            }
            match read_chunk(&mut self.r) {
                Ok(Some(c)) => self.buf.push_str(&String::from_utf8_lossy(&c)),
                _ => {
                    let rest = std::mem::take(&mut self.buf);
                    let rest = rest.trim();
                    return (!rest.is_empty())
                        .then(|| rest.strip_prefix("data: ").unwrap_or(rest).to_owned());
                }
            }
        }
    }

    /// Every remaining event.
    pub fn collect_all(mut self) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(e) = self.next_event() {
            out.push(e);
        }
        out
    }
}

/// A chat request at temperature 0.
pub fn chat(content: &str, max_tokens: usize) -> Value {
    serde_json::json!({
        "messages": [{ "role": "user", "content": content }],
        "temperature": 0,
        "max_tokens": max_tokens,
    })
}

/// The text of a chat completion's first choice.
pub fn chat_text(v: &Value) -> String {
    v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_else(|| panic!("no content in {v}"))
        .to_owned()
}

/// The concatenated delta texts of an OpenAI chat stream's events.
pub fn stream_text(events: &[String]) -> String {
    events
        .iter()
        .filter(|e| *e != "[DONE]")
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}
