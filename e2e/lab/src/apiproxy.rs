//! A recording proxy in front of the lab's API server: which writes one client made, and which
//! the API server accepted.
//!
//! The test API server runs as its own process and keeps its audit to itself, and two
//! controller replicas look alike to it (same field manager, same user agent). A replica whose
//! kubeconfig points at `ferrolb-lab api-proxy` ([`run_proxy`]) instead has every request it
//! makes forwarded byte for byte, and every write (any method but GET) printed as one line with
//! the status it got ([`WriteLine`]). [`ApiProxy`] starts it and collects the lines.
//!
//! Requests and responses on one connection are matched in order (HTTP/1.1 without
//! pipelining, which is what kube-rs speaks over plain HTTP). [`Framer`] finds where each
//! message begins in a byte stream: heads, `Content-Length` bodies, chunked bodies (watches
//! stream for minutes), bodies that end with the connection. It is pure and tested here.

use std::collections::{BTreeMap, VecDeque};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use crate::binaries::binary;
use crate::prober::now_us;
use crate::process::LineTool;
use crate::topology::command_in;

/// The start line and headers of one HTTP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// `PATCH /api/v1/... HTTP/1.1` or `HTTP/1.1 200 OK`.
    pub start: String,
    /// Header names (lower case) and values.
    pub headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The status of a response head.
    pub fn status(&self) -> Option<u16> {
        self.start.split_whitespace().nth(1)?.parse().ok()
    }
}

/// Which way a stream flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Client to server: requests (a body only with a length or chunked).
    Requests,
    /// Server to client: responses (no length and not chunked: until the connection closes).
    Responses,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Head,
    Body(u64),
    ChunkSize,
    ChunkData(u64),
    ChunkEnd,
    Trailers,
    UntilClose,
}

/// Finds message heads in one direction of an HTTP/1.1 connection.
#[derive(Debug)]
pub struct Framer {
    direction: Direction,
    state: State,
    buf: Vec<u8>,
}

impl Framer {
    /// A framer at the start of a connection.
    pub fn new(direction: Direction) -> Self {
        Self {
            direction,
            state: State::Head,
            buf: Vec::new(),
        }
    }

    /// Takes the next bytes of the stream; the heads of messages that began in them.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Head> {
        self.buf.extend_from_slice(bytes);
        let mut heads = Vec::new();
        loop {
            match self.state {
                State::Head => {
                    let Some(end) = find(&self.buf, b"\r\n\r\n") else {
                        break;
                    };
                    let text = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                    self.buf.drain(..end + 4);
                    let mut lines = text.split("\r\n");
                    let start = lines.next().unwrap_or_default().to_owned();
                    let headers = lines
                        .filter_map(|l| l.split_once(':'))
                        .map(|(n, v)| (n.trim().to_lowercase(), v.trim().to_owned()))
                        .collect();
                    let head = Head { start, headers };
                    self.state = self.body_of(&head);
                    heads.push(head);
                }
                State::Body(n) => {
                    let take = usize::try_from(n).unwrap_or(usize::MAX).min(self.buf.len());
                    self.buf.drain(..take);
                    let left = n - take as u64;
                    if left > 0 {
                        self.state = State::Body(left);
                        break;
                    }
                    self.state = State::Head;
                }
                State::ChunkSize => {
                    let Some(end) = find(&self.buf, b"\r\n") else {
                        break;
                    };
                    let line = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                    self.buf.drain(..end + 2);
                    let size = line.split(';').next().unwrap_or_default().trim();
                    let size = u64::from_str_radix(size, 16).unwrap_or(0);
                    self.state = if size == 0 {
                        State::Trailers
                    } else {
                        State::ChunkData(size)
                    };
                }
                State::ChunkData(n) => {
                    let take = usize::try_from(n).unwrap_or(usize::MAX).min(self.buf.len());
                    self.buf.drain(..take);
                    let left = n - take as u64;
                    if left > 0 {
                        self.state = State::ChunkData(left);
                        break;
                    }
                    self.state = State::ChunkEnd;
                }
                State::ChunkEnd => {
                    if self.buf.len() < 2 {
                        break;
                    }
                    self.buf.drain(..2);
                    self.state = State::ChunkSize;
                }
                State::Trailers => {
                    let Some(end) = find(&self.buf, b"\r\n") else {
                        break;
                    };
                    self.buf.drain(..end + 2);
                    if end == 0 {
                        self.state = State::Head;
                    }
                }
                State::UntilClose => {
                    self.buf.clear();
                    break;
                }
            }
        }
        heads
    }

    fn body_of(&self, head: &Head) -> State {
        let chunked = head
            .header("transfer-encoding")
            .is_some_and(|t| t.to_lowercase().contains("chunked"));
        let length = head
            .header("content-length")
            .and_then(|l| l.parse::<u64>().ok());
        let bodiless = self.direction == Direction::Responses
            && head
                .status()
                .is_some_and(|s| s < 200 || s == 204 || s == 304);
        match (bodiless, chunked, length, self.direction) {
            (true, ..) => State::Head,
            (_, true, ..) => State::ChunkSize,
            (_, _, Some(0), _) => State::Head,
            (_, _, Some(n), _) => State::Body(n),
            (_, _, None, Direction::Requests) => State::Head,
            (_, _, None, Direction::Responses) => State::UntilClose,
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// One write request and the status it got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteLine {
    /// When the request arrived, µs since the epoch.
    pub at_us: u64,
    /// HTTP method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Response status (0 when the connection closed first).
    pub status: u16,
}

impl WriteLine {
    /// The line `ferrolb-lab api-proxy` prints.
    pub fn line(&self) -> String {
        format!(
            "write at_us={} method={} path={} status={}",
            self.at_us, self.method, self.path, self.status
        )
    }

    /// Parses a line printed by [`Self::line`].
    pub fn parse(line: &str) -> Option<Self> {
        let rest = line.strip_prefix("write ")?;
        let fields: BTreeMap<&str, &str> = rest
            .split_whitespace()
            .filter_map(|w| w.split_once('='))
            .collect();
        Some(Self {
            at_us: fields.get("at_us")?.parse().ok()?,
            method: (*fields.get("method")?).to_owned(),
            path: (*fields.get("path")?).to_owned(),
            status: fields.get("status")?.parse().ok()?,
        })
    }

    /// Whether the API server accepted it.
    pub fn accepted(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Copies `from` to `to`, telling `framer`'s heads to `on_head`; shuts `to` down at the end.
fn pump(mut from: TcpStream, mut to: TcpStream, mut framer: Framer, mut on_head: impl FnMut(Head)) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // Heads first: a request is on record before the server can answer it.
        for head in framer.feed(&buf[..n]) {
            on_head(head);
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

/// Requests the proxy holds back before forwarding them: those whose path contains `path_part`
/// wait `delay` (a slow or congested API server, as one client sees it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slow {
    /// Part of the request path (`/leases/`, say).
    pub path_part: String,
    /// How long such a request waits.
    pub delay: std::time::Duration,
}

/// The body of `ferrolb-lab api-proxy`: forwards every connection to `listen` to `upstream`,
/// printing a [`WriteLine`] on standard output for each write request once its response began,
/// and holding back the requests `slow` names.
///
/// # Errors
/// When `listen` cannot be bound.
pub fn run_proxy(
    listen: SocketAddr,
    upstream: SocketAddr,
    slow: Option<Slow>,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen)?;
    for client in listener.incoming() {
        let Ok(client) = client else { continue };
        let Ok(server) = TcpStream::connect(upstream) else {
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let (Ok(client2), Ok(server2)) = (client.try_clone(), server.try_clone()) else {
            continue;
        };
        let pending: Arc<Mutex<VecDeque<(u64, String, String)>>> = Arc::default();
        let requests = pending.clone();
        let slow = slow.clone();
        std::thread::spawn(move || {
            pump(client, server, Framer::new(Direction::Requests), |head| {
                let mut words = head.start.split_whitespace();
                let method = words.next().unwrap_or_default().to_owned();
                let path = words.next().unwrap_or_default().to_owned();
                // Called before the bytes holding this head are forwarded: sleeping here holds
                // back this request (one at a time on a connection) and nothing else.
                if let Some(slow) = &slow
                    && path.contains(&slow.path_part)
                {
                    std::thread::sleep(slow.delay);
                }
                if let Ok(mut q) = requests.lock() {
                    q.push_back((now_us(), method, path));
                }
            });
        });
        std::thread::spawn(move || {
            pump(
                server2,
                client2,
                Framer::new(Direction::Responses),
                |head| {
                    let Some((at_us, method, path)) =
                        pending.lock().ok().and_then(|mut q| q.pop_front())
                    else {
                        return;
                    };
                    if method != "GET" {
                        let line = WriteLine {
                            at_us,
                            method,
                            path,
                            status: head.status().unwrap_or(0),
                        };
                        let mut stdout = std::io::stdout().lock();
                        let _ = writeln!(stdout, "{}", line.line());
                        let _ = stdout.flush();
                    }
                },
            );
        });
    }
    Ok(())
}

/// `ferrolb-lab api-proxy` running in a lab namespace; its lines are collected as they come.
#[derive(Debug)]
pub struct ApiProxy {
    /// Killed when dropped.
    tool: LineTool<WriteLine>,
}

impl ApiProxy {
    /// Starts forwarding `listen` to `upstream` in namespace `ns`.
    ///
    /// # Errors
    /// When `ferrolb-lab` is not built or cannot start.
    pub fn start(ns: &str, listen: &str, upstream: &str) -> anyhow::Result<Self> {
        Self::start_slow(ns, listen, upstream, None)
    }

    /// [`ApiProxy::start`], holding back the requests `slow` names.
    ///
    /// # Errors
    /// When `ferrolb-lab` is not built or cannot start.
    pub fn start_slow(
        ns: &str,
        listen: &str,
        upstream: &str,
        slow: Option<&Slow>,
    ) -> anyhow::Result<Self> {
        let tool = binary("ferrolb-lab")?;
        let mut command = command_in(ns, &tool.display().to_string());
        command.args(["api-proxy", "--listen", listen, "--upstream", upstream]);
        if let Some(slow) = slow {
            let ms = slow.delay.as_millis().to_string();
            command.args(["--slow-path", &slow.path_part, "--slow-ms", &ms]);
        }
        let tool = LineTool::spawn(command, "proxy", WriteLine::parse)?;
        Ok(Self { tool })
    }

    /// Every write so far.
    pub fn writes(&self) -> Vec<WriteLine> {
        self.tool.records()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn requests_with_and_without_bodies_are_found_in_one_stream() {
        let mut f = Framer::new(Direction::Requests);
        let stream = b"GET /api HTTP/1.1\r\nhost: x\r\n\r\nPATCH /api/v1/x HTTP/1.1\r\ncontent-length: 4\r\n\r\n{}{}PUT /y HTTP/1.1\r\ncontent-length: 0\r\n\r\n";
        // Byte by byte: heads are found wherever the reads split.
        let heads: Vec<Head> = stream.iter().flat_map(|b| f.feed(&[*b])).collect();
        let starts: Vec<&str> = heads.iter().map(|h| h.start.as_str()).collect();
        assert_eq!(
            starts,
            [
                "GET /api HTTP/1.1",
                "PATCH /api/v1/x HTTP/1.1",
                "PUT /y HTTP/1.1"
            ]
        );
    }

    #[test]
    fn chunked_and_sized_responses_are_followed_to_the_next_head() {
        let mut f = Framer::new(Direction::Responses);
        let mut heads =
            f.feed(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n");
        heads.extend(
            f.feed(b"3\r\n{\r\n\r\n0\r\n\r\nHTTP/1.1 409 Conflict\r\nContent-Length: 2\r\n\r\n{}"),
        );
        heads.extend(f.feed(b"HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 201 Created\r\n\r\n"));
        let statuses: Vec<u16> = heads.iter().filter_map(Head::status).collect();
        assert_eq!(statuses, [200, 409, 204, 201]);
    }

    #[test]
    fn write_lines_round_trip_and_only_2xx_is_accepted() {
        let w = WriteLine {
            at_us: 7,
            method: "PATCH".into(),
            path: "/api/v1/namespaces/default/services/web/status?fieldManager=x".into(),
            status: 409,
        };
        assert_eq!(WriteLine::parse(&w.line()), Some(w.clone()));
        assert!(!w.accepted());
        assert!(WriteLine { status: 200, ..w }.accepted());
    }
}
