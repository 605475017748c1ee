//! The compliance suite's second guest: each helper of the Rust SDK (and Rust's `std::fs`) run
//! on demand by `run(helper, arg)`, answering what the helper gave as one line of text, so the
//! cases observe the SDK through the target. Refusals come back as text, never as traps.

femtoclaw_sdk::generate!({
    inline: r#"
        package femtoclaw:conformance-sdk@1.0.0;

        /// Functions of an exported interface.
        interface tools {
            /// Returns `text` upper-cased.
            /// A second line of the comment.
            shout: func(text: string) -> string;
        }

        world sdk {
            include femtoclaw:host/capability@0.1.0;

            export tools;
            /// Runs the SDK helper `helper` with `arg`; what it gave, as text.
            export run: func(helper: string, arg: string) -> string;
        }
    "#,
    path: "../../../wit",
});

use femtoclaw_sdk::{config, files, http, kv, log};

/// The key-value namespace the cases grant.
const NAMESPACE: &str = "sdk";

struct Sdk;

impl exports::femtoclaw::conformance_sdk::tools::Guest for Sdk {
    fn shout(text: String) -> String {
        text.to_uppercase()
    }
}

impl Guest for Sdk {
    fn run(helper: String, arg: String) -> String {
        match helper.as_str() {
            "kv" => kv_round(number(&arg)),
            "kv-open" => match kv::get(&arg, "k") {
                Ok(v) => format!("ok={v:?}"),
                Err(e) => format!("error={e:?}"),
            },
            "log" => {
                log::trace("sdk-level-trace");
                log::debug("sdk-level-debug");
                log::info("sdk-level-info");
                log::warn("sdk-level-warn");
                log::error("sdk-level-error");
                "logged".to_owned()
            }
            "config" => match config::get(&arg) {
                Ok(Some(v)) => format!("value={v}"),
                Ok(None) => "none".to_owned(),
                Err(config::Error::Upstream(t)) => format!("upstream={t}"),
                Err(config::Error::Io(t)) => format!("io={t}"),
            },
            // `http`: GET `arg` with the secret `tok` as `authorization: Bearer …`, following
            // the default count of redirects.
            "http" => answer(&http::send(&http::Request::get(&arg).secret_header(
                "authorization",
                "tok",
                "Bearer ",
            ))),
            "http-get" => answer(&http::get(&arg)),
            // `http-redirects`: `N|URL`: GET URL following at most N redirects.
            "http-redirects" => {
                let (n, url) = arg.split_once('|').unwrap_or(("0", &arg));
                answer(&http::send(
                    &http::Request::get(url).max_redirects(number(n)),
                ))
            }
            // `http-full`: as `http`, with the response's headers too, one `name: value` a line.
            "http-full" => {
                let sent = http::send(&http::Request::get(&arg).secret_header(
                    "authorization",
                    "tok",
                    "Bearer ",
                ));
                let headers = sent.as_ref().map_or_else(
                    |_| String::new(),
                    |r| {
                        r.headers
                            .iter()
                            .map(|h| format!("{}: {}\n", h.name, h.value))
                            .collect()
                    },
                );
                format!("{headers}{}", answer(&sent))
            }
            "files" => files_round(),
            "files-read" => match files::read_to_string(&arg) {
                Ok(t) => format!("text={t}"),
                Err(e) => format!("error={} {e}", e.code),
            },
            "std-fs" => std_fs(),
            // `leak`: `URL|HEX`: uses the secret `tok` on URL, then writes the text whose bytes
            // XOR 0x5a are HEX to the log, stdout and stderr.
            "leak" => {
                let (url, hex) = arg.split_once('|').unwrap_or((&arg, ""));
                let sent = answer(&http::send(&http::Request::get(url).secret_header(
                    "authorization",
                    "tok",
                    "Bearer ",
                )));
                let bytes: Vec<u8> = unhex(hex).into_iter().map(|b| b ^ 0x5a).collect();
                let text = String::from_utf8_lossy(&bytes).into_owned();
                log::info(&text);
                print!("{text}");
                eprint!("{text}");
                format!("wrote {} bytes after {}", bytes.len(), sent.len())
            }
            other => format!("unknown helper {other}"),
        }
    }
}

export!(Sdk);

fn number(text: &str) -> u32 {
    text.parse().unwrap_or(0)
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len() / 2)
        .filter_map(|i| u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

/// A response as `status=… url=… body=…`, or `error=…`.
fn answer(result: &Result<http::Response, http::Error>) -> String {
    match result {
        Ok(r) => format!("status={} url={} body={}", r.status, r.url, r.text()),
        Err(e) => format!("error={}", e.message()),
    }
}

/// `n` keys `p/…` and one `q/other` set, one got, one deleted, then the keys under `p/`.
fn kv_round(n: u32) -> String {
    let round = || -> Result<String, kv::Error> {
        for i in 0..n {
            kv::set(NAMESPACE, &format!("p/{i:05}"), format!("v{i}").as_bytes())?;
        }
        kv::set(NAMESPACE, "q/other", b"o")?;
        let got = kv::get(NAMESPACE, "p/00002")?;
        kv::delete(NAMESPACE, "p/00001")?;
        let gone = kv::get(NAMESPACE, "p/00001")?;
        let keys = kv::keys(NAMESPACE, "p/")?;
        Ok(format!(
            "got={} gone={} keys={} first={} last={} sorted={} other={}",
            got.map(|v| String::from_utf8_lossy(&v).into_owned())
                .unwrap_or_else(|| "none".into()),
            gone.is_none(),
            keys.len(),
            keys.first().map_or("", String::as_str),
            keys.last().map_or("", String::as_str),
            keys.windows(2).all(|w| w[0] < w[1]),
            keys.iter().any(|k| !k.starts_with("p/")),
        ))
    };
    round().unwrap_or_else(|e| format!("error={e:?}"))
}

/// The `files` helpers: a write, the read of it and the listing of `/data`.
fn files_round() -> String {
    let wrote = files::write("/data/sdk.txt", b"written by the sdk");
    let read = files::read_to_string("/data/sdk.txt");
    let list = files::list("/data").map(|entries| {
        entries
            .iter()
            .map(|e| format!("{}:{}", e.name, e.kind))
            .collect::<Vec<_>>()
            .join(",")
    });
    format!(
        "write={} read={} list={}",
        wrote.map_or_else(|e| e.code, |()| "ok".into()),
        read.unwrap_or_else(|e| e.code),
        list.unwrap_or_else(|e| e.code),
    )
}

/// Rust's `std::fs` below `/data`: each step and what it gave, one `;` apart.
fn std_fs() -> String {
    use std::fs;
    let e = |e: std::io::Error| format!("err({:?})", e.kind());
    let mut steps = Vec::new();
    steps.push(format!(
        "read={}",
        fs::read_to_string("/data/given.txt").unwrap_or_else(e)
    ));
    steps.push(format!(
        "stat={}",
        fs::metadata("/data/given.txt").map_or_else(e, |m| format!("{}:{}", m.len(), m.is_file()))
    ));
    steps.push(format!(
        "mkdir={}",
        fs::create_dir("/data/made").map_or_else(e, |()| "ok".into())
    ));
    let mut names: Vec<String> = fs::read_dir("/data")
        .map(|d| {
            d.flatten()
                .map(|x| x.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    steps.push(format!("list={}", names.join(",")));
    steps.push(format!(
        "rename={}",
        fs::rename("/data/given.txt", "/data/made/moved.txt").map_or_else(e, |()| "ok".into())
    ));
    steps.push(format!(
        "moved={}",
        fs::read_to_string("/data/made/moved.txt").unwrap_or_else(e)
    ));
    steps.push(format!(
        "write={}",
        fs::write("/data/written.txt", b"through a stream").map_or_else(e, |()| "ok".into())
    ));
    steps.push(format!(
        "remove={}",
        fs::remove_file("/data/made/moved.txt").map_or_else(e, |()| "ok".into())
    ));
    steps.push(format!(
        "rmdir={}",
        fs::remove_dir("/data/made").map_or_else(e, |()| "ok".into())
    ));
    steps.push(format!(
        "after={}",
        fs::read_dir("/data").map_or_else(e, |d| {
            let mut n: Vec<String> = d
                .flatten()
                .map(|x| x.file_name().to_string_lossy().into_owned())
                .collect();
            n.sort();
            n.join(",")
        })
    ));
    steps.join(";")
}
