//! Driving a target through its public surfaces: a binary's command line on a data directory of
//! the case's own, and a server's HTTP API (one the case starts from the binary, or the one at
//! `--url`).

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value as Json;

use crate::{Failure, GUEST, GUEST_MANIFEST};

/// The longest a command of the target may run: past every deadline a case asks for.
pub const COMMAND_LIMIT: Duration = Duration::from_secs(120);

/// What the suite runs against.
#[derive(Clone, Debug)]
pub enum Target {
    /// A runtime's binary: the command line, and servers the cases start from it.
    Binary(PathBuf),
    /// A running server: its HTTP API and MCP, with a bearer token of a principal the server's
    /// policy lets invoke the first-party `hello` capability.
    Server { url: String, token: String },
}

impl Target {
    /// A fresh data directory driven by the binary; not applicable to a server.
    pub fn host(&self) -> Result<Host, Failure> {
        match self {
            Target::Binary(binary) => Host::new(binary),
            Target::Server { .. } => Err(Failure::NotApplicable(
                "the target is a server: it has no command line".into(),
            )),
        }
    }

    /// A server: the one given, or one started from the binary on a fresh data directory under
    /// `policy` (the default policy when `None`), with a token of `user:local`. A case that
    /// needs a policy of its own does not apply to a given server.
    pub fn server(&self, policy: Option<&str>) -> Result<Server, Failure> {
        match self {
            Target::Server { .. } if policy.is_some() => Err(Failure::NotApplicable(
                "the case needs a server under a policy of its own".into(),
            )),
            Target::Server { url, token } => Ok(Server {
                url: url.trim_end_matches('/').to_owned(),
                token: token.clone(),
                child: None,
                host: None,
            }),
            Target::Binary(binary) => {
                let host = Host::new(binary)?;
                if let Some(policy) = policy {
                    host.policy(policy)?;
                }
                let token = host.ok(&["token", "create", "--principal", "user:local"])?;
                Server::start(host, token.trim().to_owned())
            }
        }
    }

    /// Whether the suite starts its own servers (and so controls their data and policy).
    pub fn owns_servers(&self) -> bool {
        matches!(self, Target::Binary(_))
    }
}

/// What a command did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Stdout as JSON.
    pub fn json(&self) -> Result<Json, Failure> {
        serde_json::from_str(&self.stdout).map_err(|e| {
            Failure::Failed(format!(
                "stdout is not JSON ({e}): {}",
                excerpt(&self.stdout)
            ))
        })
    }

    /// Fails unless the exit code is `code`.
    pub fn expect(&self, code: i32, what: &str) -> Result<&Self, Failure> {
        if self.code == code {
            Ok(self)
        } else {
            Err(Failure::Failed(format!(
                "{what}: exit {} where {code} is required; stderr: {}",
                self.code,
                excerpt(&self.stderr)
            )))
        }
    }
}

/// A binary on a data directory of its own (removed when dropped).
#[derive(Debug)]
pub struct Host {
    binary: PathBuf,
    pub data: tempfile::TempDir,
    pub files: tempfile::TempDir,
}

impl Host {
    fn new(binary: &Path) -> Result<Self, Failure> {
        let dir = || tempfile::tempdir().map_err(|e| Failure::Failed(format!("no temp dir: {e}")));
        Ok(Host {
            binary: binary.to_owned(),
            data: dir()?,
            files: dir()?,
        })
    }

    /// The command on this data directory, with no policy or token from the environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.binary);
        command.args(args);
        self.prepare(command)
    }

    /// The command, its files unable to grow past `bytes`: `prlimit --fsize`, under a shell that
    /// ignores `SIGXFSZ`, so that a write past the limit fails with `EFBIG` instead of killing it.
    pub fn command_with_file_limit(&self, bytes: u64, args: &[&str]) -> Command {
        let script = format!("trap '' XFSZ; exec prlimit --fsize={bytes} -- \"$0\" \"$@\"");
        self.command_under(&["sh", "-c", &script], args)
    }

    /// The command run by another program: `wrapper` (its program and arguments), then the
    /// target's binary and `args`.
    pub fn command_under(&self, wrapper: &[&str], args: &[&str]) -> Command {
        let (program, wrapper_args) = wrapper.split_first().unwrap_or((&"env", &[]));
        let mut command = Command::new(program);
        command.args(wrapper_args).arg(&self.binary).args(args);
        self.prepare(command)
    }

    fn prepare(&self, mut command: Command) -> Command {
        command
            .env("FEMTOCLAW_DATA_DIR", self.data.path())
            .env_remove("FEMTOCLAW_POLICY")
            .env_remove("FEMTOCLAW_TOKEN")
            .env_remove("FEMTOCLAW_CONFIG")
            .stdin(Stdio::null());
        command
    }

    /// Runs a command to completion.
    pub fn run(&self, args: &[&str]) -> Result<Run, Failure> {
        self.run_command(self.command(args), args)
    }

    /// Runs a command to completion with `input` on its stdin.
    pub fn run_with_input(&self, args: &[&str], input: &[u8]) -> Result<Run, Failure> {
        self.finish(self.command(args), args, Some(input))
    }

    /// `secret set NAME` with `value` on stdin.
    pub fn secret_set(&self, name: &str, value: &[u8]) -> Result<Run, Failure> {
        self.run_with_input(&["secret", "set", name], value)
    }

    /// Runs `command`, made of `args`, to completion.
    pub fn run_command(&self, command: Command, args: &[&str]) -> Result<Run, Failure> {
        self.finish(command, args, None)
    }

    fn finish(
        &self,
        mut command: Command,
        args: &[&str],
        input: Option<&[u8]>,
    ) -> Result<Run, Failure> {
        let what = || format!("`{}`", args.join(" "));
        if input.is_some() {
            command.stdin(Stdio::piped());
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Failure::Failed(format!("cannot run {}: {e}", self.binary.display())))?;
        // Written from a thread of its own, so that a target that does not read it cannot
        // block the case; the pipe closes when the bytes are written.
        if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
            let input = input.to_vec();
            std::thread::spawn(move || {
                use std::io::Write as _;
                let _ = stdin.write_all(&input);
            });
        }
        // Drained while it runs, so a chatty target cannot block on a full pipe.
        let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                if let Some(mut pipe) = pipe {
                    let _ = pipe.read_to_end(&mut bytes);
                }
                String::from_utf8_lossy(&bytes).into_owned()
            })
        };
        let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
        let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
        let started = std::time::Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if started.elapsed() < COMMAND_LIMIT => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(Failure::Failed(format!(
                        "{} did not end within {} s",
                        what(),
                        COMMAND_LIMIT.as_secs()
                    )));
                }
                Err(e) => return Err(Failure::Failed(format!("{}: {e}", what()))),
            }
        };
        Ok(Run {
            code: status.code().unwrap_or(-1),
            stdout: stdout.join().unwrap_or_default(),
            stderr: stderr.join().unwrap_or_default(),
        })
    }

    /// Runs a command that must succeed; its stdout.
    pub fn ok(&self, args: &[&str]) -> Result<String, Failure> {
        let run = self.run(args)?;
        run.expect(0, &args.join(" "))?;
        Ok(run.stdout)
    }

    /// Sets the policy (`<data dir>/policy/conformance.cedar`).
    pub fn policy(&self, text: &str) -> Result<(), Failure> {
        let dir = self.data.path().join("policy");
        std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(dir.join("conformance.cedar"), text))
            .map_err(|e| Failure::Failed(format!("cannot write the policy: {e}")))
    }

    /// Writes a file for the host to read; its path.
    pub fn file(&self, name: &str, bytes: &[u8]) -> Result<PathBuf, Failure> {
        let path = self.files.path().join(name);
        std::fs::write(&path, bytes)
            .map_err(|e| Failure::Failed(format!("cannot write {name}: {e}")))?;
        Ok(path)
    }

    /// Installs the suite's guest as capability `conformance`.
    pub fn install(&self) -> Result<(), Failure> {
        let wasm = self.file("conformance.wasm", GUEST)?;
        let manifest = self.file("capability.toml", GUEST_MANIFEST.as_bytes())?;
        self.ok(&[
            "capability",
            "add",
            &wasm.to_string_lossy(),
            "--manifest",
            &manifest.to_string_lossy(),
        ])?;
        Ok(())
    }

    /// `invoke conformance FUNCTION --args ARGS` plus `extra`.
    pub fn invoke(&self, function: &str, args: &Json, extra: &[&str]) -> Result<Run, Failure> {
        let args = args.to_string();
        let mut all = vec!["invoke", "conformance", function, "--args", &args];
        all.extend_from_slice(extra);
        self.run(&all)
    }

    /// The ledger's entries (`log show --json`), oldest first.
    pub fn entries(&self) -> Result<Vec<Json>, Failure> {
        let out = self.ok(&["log", "show", "--json", "--limit", "100000"])?;
        out.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l).map_err(|e| {
                    Failure::Failed(format!("log show: a line is not JSON ({e}): {l}"))
                })
            })
            .collect()
    }
}

/// A server under test.
#[derive(Debug)]
pub struct Server {
    pub url: String,
    pub token: String,
    child: Option<Child>,
    /// The data directory of a server the suite started.
    pub host: Option<Host>,
}

impl Server {
    pub(crate) fn start(host: Host, token: String) -> Result<Self, Failure> {
        let mut child = host
            .command(&["serve", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| Failure::Failed(format!("cannot start serve: {e}")))?;
        let mut line = String::new();
        if let Some(stdout) = child.stdout.as_mut() {
            let _ = BufReader::new(stdout).read_line(&mut line);
        }
        let Some(url) = line.trim().strip_prefix("listening on ") else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Failure::Failed(format!(
                "serve --listen 127.0.0.1:0 must first print `listening on URL`; it printed {:?}",
                line.trim()
            )));
        };
        Ok(Server {
            url: url.to_owned(),
            token,
            child: Some(child),
            host: Some(host),
        })
    }

    /// The process id of a server the suite started.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The HTTP client every case uses: bounded, so a hung target fails rather than hangs.
    pub fn client() -> reqwest::blocking::Client {
        reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap_or_else(|_| reqwest::blocking::Client::new())
    }

    /// A request with this server's token, or with `token` (none: `None`).
    pub fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Json>,
    ) -> Result<Response, Failure> {
        let mut request = Self::client().request(method, format!("{}{path}", self.url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .body(body.to_string());
        }
        let response = request
            .send()
            .map_err(|e| Failure::Failed(format!("{path}: no answer: {e}")))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response
            .text()
            .map_err(|e| Failure::Failed(format!("{path}: cannot read the body: {e}")))?;
        Ok(Response {
            status,
            headers,
            text,
        })
    }

    /// GET with this server's token.
    pub fn get(&self, path: &str) -> Result<Response, Failure> {
        self.request(reqwest::Method::GET, path, Some(&self.token), None)
    }

    /// POST JSON with this server's token.
    pub fn post(&self, path: &str, body: &Json) -> Result<Response, Failure> {
        self.request(reqwest::Method::POST, path, Some(&self.token), Some(body))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Response {
    /// The body as JSON (an MCP answer sent as one server-sent event is unwrapped).
    pub fn json(&self) -> Result<Json, Failure> {
        if self.header("content-type").starts_with("text/event-stream") {
            // The JSON-RPC answer is the event whose data is a message with an id.
            let answer = self
                .text
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .filter_map(|d| serde_json::from_str::<Json>(d.trim()).ok())
                .find(|m| m.get("id").is_some());
            return answer.ok_or_else(|| {
                Failure::Failed(format!(
                    "the event stream holds no JSON-RPC answer: {}",
                    excerpt(&self.text)
                ))
            });
        }
        serde_json::from_str(self.text.trim()).map_err(|e| {
            Failure::Failed(format!(
                "the body is not JSON ({e}): {}",
                excerpt(&self.text)
            ))
        })
    }

    /// A header's value, or "".
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// Fails unless the status is `status`.
    pub fn expect(&self, status: u16, what: &str) -> Result<&Self, Failure> {
        if self.status == status {
            Ok(self)
        } else {
            Err(Failure::Failed(format!(
                "{what}: HTTP {} where {status} is required: {}",
                self.status,
                excerpt(&self.text)
            )))
        }
    }
}

/// The first 300 characters of a text, for a failure message.
pub fn excerpt(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(300) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}
