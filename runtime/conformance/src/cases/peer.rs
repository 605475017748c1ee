//! A loopback HTTP peer of the suite's own: it records every request it reads and answers as
//! the case says, misbehaving on demand (an answer that never comes).

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::failed;
use crate::Failure;

/// One request a peer read.
#[derive(Clone, Debug, Default)]
pub(super) struct Seen {
    /// Everything read.
    pub(super) bytes: Vec<u8>,
    pub(super) method: String,
    pub(super) path: String,
    /// Header names lower-cased.
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: Vec<u8>,
}

impl Seen {
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn parse(bytes: &[u8]) -> Seen {
        let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
            return Seen {
                bytes: bytes.to_vec(),
                ..Seen::default()
            };
        };
        let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
        let mut lines = head.split("\r\n");
        let first = lines.next().unwrap_or_default();
        let mut parts = first.split(' ');
        let method = parts.next().unwrap_or_default().to_owned();
        let path = parts.next().unwrap_or_default().to_owned();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        Seen {
            bytes: bytes.to_vec(),
            method,
            path,
            headers,
            body: bytes[end + 4..].to_vec(),
        }
    }
}

/// What a peer does with a request.
pub(super) enum Reply {
    /// Writes these bytes and closes.
    Bytes(Vec<u8>),
    /// Holds the connection open, answering nothing, until the peer stops.
    Hang,
}

type Handler = Arc<dyn Fn(&Seen) -> Reply + Send + Sync>;

/// A server on 127.0.0.1, a port the system picks, answering each connection on a thread of
/// its own until dropped (at most 120 s).
pub(super) struct Peer {
    pub(super) port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Peer {
    pub(super) fn start(
        handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static,
    ) -> Result<Peer, Failure> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .map_err(|e| failed(format!("cannot listen on loopback: {e}")))?;
        Peer::on(listener, handler)
    }

    /// The same on a listener of the case's own.
    pub(super) fn on(
        listener: TcpListener,
        handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static,
    ) -> Result<Peer, Failure> {
        listener
            .set_nonblocking(true)
            .map_err(|e| failed(format!("cannot set the listener non-blocking: {e}")))?;
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Handler = Arc::new(handler);
        let thread = {
            let (seen, stop) = (seen.clone(), stop.clone());
            std::thread::spawn(move || {
                let until = Instant::now() + Duration::from_secs(120);
                while !stop.load(Ordering::SeqCst) && Instant::now() < until {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let (seen, stop, handler) =
                                (seen.clone(), stop.clone(), handler.clone());
                            std::thread::spawn(move || serve(stream, &seen, &stop, &handler));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
        };
        Ok(Peer {
            port,
            seen,
            stop,
            thread: Some(thread),
        })
    }

    /// Answers every request with `reply`.
    pub(super) fn fixed(reply: String) -> Result<Peer, Failure> {
        Peer::start(move |_| Reply::Bytes(reply.clone().into_bytes()))
    }

    pub(super) fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub(super) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads one request (its head, then its body by `content-length`; whatever came within 1 s
/// when there is no head) and answers it.
fn serve(mut stream: TcpStream, seen: &Mutex<Vec<Seen>>, stop: &AtomicBool, handler: &Handler) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65536];
    let started = Instant::now();
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if got.len() >= end + 4 + length {
                break;
            }
        }
        if started.elapsed() > Duration::from_secs(5) {
            break;
        }
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    let request = Seen::parse(&got);
    if let Ok(mut s) = seen.lock() {
        s.push(request.clone());
    }
    match handler(&request) {
        Reply::Bytes(bytes) => {
            let _ = stream.write_all(&bytes);
            let _ = stream.flush();
        }
        Reply::Hang => {
            let until = Instant::now() + Duration::from_secs(120);
            while !stop.load(Ordering::SeqCst) && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// An HTTP/1.1 answer that closes the connection.
pub(super) fn answer(status: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let mut text = format!("HTTP/1.1 {status}\r\n");
    for (n, v) in headers {
        text.push_str(&format!("{n}: {v}\r\n"));
    }
    text.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    ));
    Reply::Bytes(text.into_bytes())
}
