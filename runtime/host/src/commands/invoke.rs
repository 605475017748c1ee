//! `invoke`: one function of a capability, its result printed as JSON.

use std::io::Read as _;

use femtoclaw_host::admin::Request;
use femtoclaw_host::{Code, Failure};
use serde_json::{Value as Json, json};

use super::{Global, PrincipalArgs, out, print_json};

/// Invoke one function of a capability and print its result as JSON.
#[derive(Debug, clap::Args)]
pub struct Invoke {
    #[command(flatten)]
    who: PrincipalArgs,
    /// `name` or `name@version`.
    capability: String,
    /// The exported function (`greet`, or `<interface>#<function>`).
    function: String,
    /// Arguments: a JSON object keyed by parameter name; `@FILE` reads it from a file, `-`
    /// from stdin (for arguments too large for a command line).
    #[arg(long, default_value = "{}")]
    args: String,
    /// Fuel budget (default: the manifest's).
    #[arg(long)]
    fuel: Option<u64>,
    /// Wall-clock deadline in milliseconds, host calls included (default and most: the
    /// operator's `deadline_ms`, 30 s unless configured). Exit 11 when it passes.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    deadline_ms: Option<u64>,
    /// Print an object with the result, fuel, captured output, logs and the receipt.
    #[arg(long)]
    json: bool,
    /// Call a running server instead (`http://127.0.0.1:8420`): the same result and exit
    /// code; the principal is the token's.
    #[arg(long, requires = "token")]
    remote: Option<String>,
    /// The bearer token for `--remote`.
    #[arg(long, env = "FEMTOCLAW_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

impl Invoke {
    pub fn run(self, global: &Global) -> Result<(), Failure> {
        let args = arguments(&self.args)?;
        if let (Some(url), Some(token)) = (&self.remote, &self.token) {
            return self.remotely(url, token, args);
        }
        // Checked here, so that a bad principal is refused before anything is sent.
        self.who.principal()?;
        let answer = global.operate(&Request::Invoke {
            principal: self.who.principal.clone(),
            groups: self.who.groups.clone(),
            capability: self.capability.clone(),
            function: self.function.clone(),
            args,
            fuel: self.fuel,
            deadline_ms: self.deadline_ms,
        })?;
        if self.json {
            print_json(&answer);
        } else {
            out(&answer["result"].to_string());
        }
        Ok(())
    }
}

impl Invoke {
    /// `--remote`: the invocation through a server's `POST /v1/invoke`; a problem it answers
    /// exits with the code of its class, as the same failure would locally.
    fn remotely(&self, url: &str, token: &str, args: Json) -> Result<(), Failure> {
        let unreachable =
            |e: &dyn std::fmt::Display| Failure::new(Code::Other, format!("--remote {url}: {e}"));
        let mut body =
            json!({ "capability": self.capability, "function": self.function, "args": args });
        if let Some(fuel) = self.fuel {
            body["fuel"] = json!(fuel);
        }
        let response = reqwest::blocking::Client::new()
            .post(format!("{}/v1/invoke", url.trim_end_matches('/')))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .map_err(|e| unreachable(&e))?;
        let status = response.status();
        let text = response.text().map_err(|e| unreachable(&e))?;
        let answer: Json = serde_json::from_str(&text)
            .map_err(|e| unreachable(&format!("the answer (status {status}) is not JSON: {e}")))?;
        if !status.is_success() {
            let code = answer["code"]
                .as_str()
                .and_then(Code::from_name)
                .unwrap_or(Code::Other);
            let detail = answer["detail"].as_str().unwrap_or(&text);
            return Err(Failure::new(code, detail));
        }
        if self.json {
            print_json(&answer);
        } else {
            out(&answer["result"].to_string());
        }
        Ok(())
    }
}

/// The arguments object: `--args` itself, `@FILE`'s contents, or stdin's for `-`.
fn arguments(spec: &str) -> Result<Json, Failure> {
    let bad = |what: String| Failure::new(Code::InvalidArgs, what);
    let (text, from) = if spec == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| bad(format!("--args -: cannot read stdin: {e}")))?;
        (text, " (from stdin)".to_owned())
    } else if let Some(path) = spec.strip_prefix('@') {
        let text = std::fs::read_to_string(path)
            .map_err(|e| bad(format!("--args @{path}: cannot read `{path}`: {e}")))?;
        (text, format!(" (from `{path}`)"))
    } else {
        (spec.to_owned(), String::new())
    };
    serde_json::from_str(&text).map_err(|e| bad(format!("--args{from} is not JSON: {e}")))
}
