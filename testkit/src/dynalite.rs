//! A real local DynamoDB (dynalite, from npm, pinned in tools/dynalite) for
//! tests, and a fault-injecting HTTP proxy to put in front of it.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A dynalite process on 127.0.0.1, ended when dropped (and when the test
/// process ends, since it exits when its stdin closes).
pub struct Dynalite {
    child: Child,
    /// Its URL (`http://127.0.0.1:PORT`), for the SDK's endpoint.
    pub endpoint: String,
}

fn tools_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tools/dynalite")
}

impl Dynalite {
    /// Starts dynalite; fails (never skips) when it is not installed.
    pub fn start() -> Dynalite {
        let dir = tools_dir();
        assert!(
            dir.join("node_modules/dynalite/package.json").exists(),
            "dynalite is not installed: run `scripts/dynalite.sh install` (scripts/test.sh does it)"
        );
        let mut child = Command::new("node")
            .arg(dir.join("serve.js"))
            .arg("0")
            .env("EXIT_WITH_STDIN", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node runs (dynalite needs Node.js)");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let port = line
            .trim()
            .strip_prefix("DYNALITE_PORT=")
            .unwrap_or_else(|| panic!("dynalite said {line:?}"));
        Dynalite {
            endpoint: format!("http://127.0.0.1:{port}"),
            child,
        }
    }
}

impl Drop for Dynalite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the proxy does to the next requests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    /// Forward everything.
    None,
    /// Answer every request with a throttling error.
    Throttle,
    /// Answer every request with HTTP 500.
    ServerError,
    /// Forward half of each BatchWriteItem and return the rest as UnprocessedItems.
    Unprocessed,
    /// Close every connection without an answer (an outage).
    Down,
    /// Each request: a fault with these odds (throttle, 500, unprocessed), else forwarded.
    Random(f64, f64, f64),
    /// A BatchWriteItem whose body contains this text is refused with a
    /// ValidationException in DynamoDB's words for an item too large, as it
    /// refuses a value it will not store; the rest is forwarded.
    Refuse(&'static str),
    /// As [`Fault::Refuse`] for `refuse`; a BatchWriteItem carrying `delay`
    /// is held `by` before it is forwarded (a request still on its way
    /// when another of its write was refused). The proxy forwards it even
    /// if the client went away meanwhile, as DynamoDB goes on with a
    /// request it has received.
    RefuseDelaying {
        /// Refused when its body contains this.
        refuse: &'static str,
        /// Held when its body contains this.
        delay: &'static str,
        /// How long it is held.
        by: std::time::Duration,
    },
    /// As [`Fault::Unprocessed`], with `UnprocessedItems` keyed by the
    /// table's ARN instead of its name (AWS documents both).
    UnprocessedUnderArn,
}

/// Counts of what the proxy did.
#[derive(Debug, Default)]
pub struct FaultStats {
    /// Requests passed to dynalite.
    pub forwarded: AtomicU64,
    /// Requests answered ThrottlingException.
    pub throttled: AtomicU64,
    /// Requests answered HTTP 500.
    pub errors: AtomicU64,
    /// BatchWriteItems answered with UnprocessedItems.
    pub unprocessed: AtomicU64,
    /// Connections closed without an answer.
    pub dropped: AtomicU64,
    /// BatchWriteItems refused with a ValidationException.
    pub refused: AtomicU64,
}

/// An HTTP/1.1 proxy on 127.0.0.1 in front of dynalite that injects faults.
pub struct FaultProxy {
    /// Its URL, for the SDK's endpoint.
    pub endpoint: String,
    fault: Arc<Mutex<Fault>>,
    /// What it did.
    pub stats: Arc<FaultStats>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Starts the proxy in front of `upstream` (a dynalite URL), forwarding all.
    pub async fn start(upstream: &str) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let upstream = upstream.trim_start_matches("http://").to_owned();
        let fault = Arc::new(Mutex::new(Fault::None));
        let stats = Arc::new(FaultStats::default());
        let (f, s) = (fault.clone(), stats.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((conn, _)) = listener.accept().await else { return };
                tokio::spawn(serve(conn, upstream.clone(), f.clone(), s.clone()));
            }
        });
        FaultProxy {
            endpoint,
            fault,
            stats,
            task,
        }
    }

    /// From now on, injects `fault`.
    pub fn set(&self, fault: Fault) {
        *self.fault.lock().unwrap() = fault;
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Request {
    head: String,
    body: Vec<u8>,
}

async fn read_request(conn: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Request> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end + 4]).into_owned();
            let len = content_length(&head);
            while buf.len() < end + 4 + len {
                let mut chunk = [0u8; 65536];
                let n = conn.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let body = buf[end + 4..end + 4 + len].to_vec();
            buf.drain(..end + 4 + len);
            return Some(Request { head, body });
        }
        let mut chunk = [0u8; 65536];
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn content_length(head: &str) -> usize {
    head.lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0)
}

fn with_content_length(head: &str, len: usize) -> String {
    head.lines()
        .filter(|l| !l.is_empty())
        .map(|l| match l.split_once(':') {
            Some((name, _)) if name.eq_ignore_ascii_case("content-length") => format!("Content-Length: {len}"),
            _ => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\r\n")
        + "\r\n\r\n"
}

fn response(status: &str, body: &Value) -> Vec<u8> {
    let body = body.to_string();
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/x-amz-json-1.0\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

async fn forward(upstream: &str, head: &str, body: &[u8]) -> Option<(String, Vec<u8>)> {
    let mut up = TcpStream::connect(upstream).await.ok()?;
    up.write_all(with_content_length(head, body.len()).as_bytes())
        .await
        .ok()?;
    up.write_all(body).await.ok()?;
    let mut buf = Vec::new();
    let resp = read_request(&mut up, &mut buf).await?;
    Some((resp.head, resp.body))
}

async fn serve(mut conn: TcpStream, upstream: String, fault: Arc<Mutex<Fault>>, stats: Arc<FaultStats>) {
    let mut buf = Vec::new();
    while let Some(req) = read_request(&mut conn, &mut buf).await {
        let is_batch_write = req.head.contains("DynamoDB_20120810.BatchWriteItem");
        let mut mode = *fault.lock().unwrap();
        if let Fault::Random(throttle, error, unprocessed) = mode {
            let r = fastrand::f64();
            mode = if r < throttle {
                Fault::Throttle
            } else if r < throttle + error {
                Fault::ServerError
            } else if r < throttle + error + unprocessed {
                Fault::Unprocessed
            } else {
                Fault::None
            };
        }
        let contains = |marker: &str| req.body.windows(marker.len()).any(|w| w == marker.as_bytes());
        if let Fault::RefuseDelaying { refuse, delay, by } = mode {
            if is_batch_write && contains(delay) {
                tokio::time::sleep(by).await;
            }
            mode = Fault::Refuse(refuse);
        }
        let under_arn = mode == Fault::UnprocessedUnderArn;
        if under_arn {
            mode = Fault::Unprocessed;
        }
        let answer = match mode {
            Fault::Down => {
                stats.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Fault::Throttle => {
                stats.throttled.fetch_add(1, Ordering::Relaxed);
                response(
                    "400 Bad Request",
                    &json!({"__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
                            "message": "injected throttling"}),
                )
            }
            Fault::ServerError => {
                stats.errors.fetch_add(1, Ordering::Relaxed);
                response(
                    "500 Internal Server Error",
                    &json!({"__type": "com.amazonaws.dynamodb.v20120810#InternalServerError", "message": "injected"}),
                )
            }
            Fault::Unprocessed if is_batch_write => {
                let mut body: Value = serde_json::from_slice(&req.body).unwrap();
                let mut unprocessed = serde_json::Map::new();
                for (table, writes) in body["RequestItems"].as_object_mut().unwrap() {
                    let writes = writes.as_array_mut().unwrap();
                    let keep = writes.len().div_ceil(2);
                    let rest: Vec<Value> = writes.drain(keep..).collect();
                    if !rest.is_empty() {
                        let key = if under_arn {
                            format!("arn:aws:dynamodb:us-east-1:000000000000:table/{table}")
                        } else {
                            table.clone()
                        };
                        unprocessed.insert(key, Value::Array(rest));
                    }
                }
                match forward(&upstream, &req.head, body.to_string().as_bytes()).await {
                    Some((head, _)) if head.starts_with("HTTP/1.1 200") => {
                        stats.unprocessed.fetch_add(1, Ordering::Relaxed);
                        response("200 OK", &json!({"UnprocessedItems": unprocessed}))
                    }
                    Some((head, resp)) => [with_content_length(&head, resp.len()).into_bytes(), resp].concat(),
                    None => return,
                }
            }
            Fault::Refuse(marker) if is_batch_write && contains(marker) => {
                stats.refused.fetch_add(1, Ordering::Relaxed);
                response(
                    "400 Bad Request",
                    &json!({"__type": "com.amazon.coral.validate#ValidationException",
                            "message": "Item size has exceeded the maximum allowed size (injected refusal)"}),
                )
            }
            Fault::None
            | Fault::Unprocessed
            | Fault::Random(..)
            | Fault::Refuse(_)
            | Fault::RefuseDelaying { .. }
            | Fault::UnprocessedUnderArn => {
                stats.forwarded.fetch_add(1, Ordering::Relaxed);
                match forward(&upstream, &req.head, &req.body).await {
                    Some((head, resp)) => [with_content_length(&head, resp.len()).into_bytes(), resp].concat(),
                    None => return,
                }
            }
        };
        if conn.write_all(&answer).await.is_err() {
            return;
        }
    }
}
