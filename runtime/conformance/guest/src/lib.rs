//! The compliance suite's guest: one function per behaviour a case observes.

use std::hint::black_box;

femtoclaw_sdk::generate!({
    inline: r#"
        package femtoclaw:conformance@1.0.0;

        world conformance {
            include femtoclaw:host/capability@0.1.0;

            /// Returns `text` unchanged.
            export echo: func(text: string) -> string;
            /// `a + b`, wrapping.
            export add: func(a: s64, b: s64) -> s64;
            /// `a / b`; traps when `b` is 0.
            export divide: func(a: u32, b: u32) -> u32;
            /// Loops forever: ends only when the fuel or the deadline does.
            export spin: func() -> u64;
            /// Logs `message` at info level; returns its length.
            export note: func(message: string) -> u32;
            /// Stores `value` under `key` in namespace `conformance`.
            export remember: func(key: string, value: string) -> result<_, string>;
            /// The value under `key` in namespace `conformance`, if any.
            export recall: func(key: string) -> result<option<string>, string>;
        }
    "#,
    path: "../../../wit",
});

/// The key-value namespace the manifest requests.
const NAMESPACE: &str = "conformance";

struct Conformance;

impl Guest for Conformance {
    fn echo(text: String) -> String {
        match text.strip_prefix(probes::PREFIX) {
            Some(probe) => probes::run(probe),
            None => text,
        }
    }

    fn add(a: i64, b: i64) -> i64 {
        a.wrapping_add(b)
    }

    fn divide(a: u32, b: u32) -> u32 {
        black_box(a) / black_box(b)
    }

    fn spin() -> u64 {
        let mut n = 0u64;
        loop {
            n = black_box(n.wrapping_add(1));
        }
    }

    fn note(message: String) -> u32 {
        femtoclaw_sdk::log::info(&message);
        message.len() as u32
    }

    fn remember(key: String, value: String) -> Result<(), String> {
        femtoclaw_sdk::kv::set(NAMESPACE, &key, value.as_bytes()).map_err(|e| e.to_string())
    }

    fn recall(key: String) -> Result<Option<String>, String> {
        let value = femtoclaw_sdk::kv::get(NAMESPACE, &key).map_err(|e| e.to_string())?;
        Ok(value.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }
}

export!(Conformance);

/// The sandbox probes: `echo` of a text beginning with [`probes::PREFIX`] runs the probe the
/// rest names instead of echoing, so the sandbox cases reach the virtualized WASI context
/// without widening the guest's exports. Every other text is echoed as before.
mod probes {
    use std::hint::black_box;
    use std::sync::atomic::{AtomicU32, Ordering};

    femtoclaw_sdk::wit_bindgen::generate!({
        inline: "
            package femtoclaw:conformance-probes;
            world probes {
                import wasi:random/random@0.2.12;
                import wasi:random/insecure@0.2.12;
                import wasi:random/insecure-seed@0.2.12;
                import wasi:clocks/wall-clock@0.2.12;
                import wasi:clocks/monotonic-clock@0.2.12;
                import wasi:cli/environment@0.2.12;
                import wasi:cli/exit@0.2.12;
                import wasi:cli/stdin@0.2.12;
                import wasi:cli/stdout@0.2.12;
                import wasi:cli/stderr@0.2.12;
                import wasi:cli/terminal-stdin@0.2.12;
                import wasi:cli/terminal-stdout@0.2.12;
                import wasi:cli/terminal-stderr@0.2.12;
                import wasi:filesystem/types@0.2.12;
                import wasi:filesystem/preopens@0.2.12;
            }
        ",
        path: "../../../wit",
        world: "femtoclaw:conformance-probes/probes",
        generate_all,
        runtime_path: "femtoclaw_sdk::wit_bindgen::rt",
    });

    use wasi::cli::{
        environment, exit, stderr, stdin, stdout, terminal_stderr, terminal_stdin, terminal_stdout,
    };
    use wasi::clocks::{monotonic_clock, wall_clock};
    use wasi::random::{insecure, insecure_seed, random};

    /// What `echo` takes for a probe: SOH, then `probe:`.
    pub const PREFIX: &str = "\u{1}probe:";

    /// Bumped by every `fresh` probe: a fresh store starts it at 0 again.
    static CALLS: AtomicU32 = AtomicU32::new(0);

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn number(text: &str) -> u64 {
        text.parse().unwrap_or(0)
    }

    /// Writes `n` bytes of `byte` in chunks the stream accepts; the chunks it refused.
    fn fill(stream: &wasi::io::streams::OutputStream, byte: u8, n: u64) -> u32 {
        let chunk = vec![byte; 4096];
        let mut left = n;
        let mut refused = 0;
        while left > 0 {
            let take = left.min(4096);
            if stream
                .blocking_write_and_flush(&chunk[..take as usize])
                .is_err()
            {
                refused += 1;
            }
            left -= take;
        }
        refused
    }

    /// The bytes a rebuild may change: a case finds the tag in the component and changes the
    /// two bytes after it, to get a component that behaves differently (`variant:*` probes).
    #[used]
    static VARIANT: [u8; 32] = *b"femtoclaw-conformance-variant:\xff\xfe";

    /// The two bytes after the tag of [`VARIANT`], read from memory (never folded).
    fn variant() -> [u8; 2] {
        // Through an opaque reference, so the bytes are loaded from the data segment.
        let bytes: &[u8; 32] = black_box(&VARIANT);
        [bytes[30], bytes[31]]
    }

    /// A recursion the compiler cannot make a loop: `n` frames deep.
    #[inline(never)]
    fn deep(n: u64) -> u64 {
        if n == 0 {
            return 1;
        }
        let below = deep(black_box(n - 1));
        (below.rotate_left(7) ^ n).wrapping_mul(3)
    }

    /// The preopened `/data`, if the guest has it.
    fn data() -> Option<wasi::filesystem::types::Descriptor> {
        wasi::filesystem::preopens::get_directories()
            .into_iter()
            .find(|(_, path)| path == "/data")
            .map(|(dir, _)| dir)
    }

    fn kv_ops(ops: &str) -> String {
        use femtoclaw_sdk::kv;
        let bucket = match kv::open(super::NAMESPACE) {
            Ok(bucket) => bucket,
            Err(e) => return format!("open failed: {e}"),
        };
        let shown = |r: Result<(), kv::Error>| match r {
            Ok(()) => "ok".to_owned(),
            Err(e) => format!("err {e}"),
        };
        let mut out = Vec::new();
        for op in ops.split(' ').filter(|o| !o.is_empty()) {
            let mut parts = op.splitn(3, '=');
            let (verb, a, b) = (
                parts.next().unwrap_or(""),
                parts.next().unwrap_or(""),
                parts.next().unwrap_or(""),
            );
            let line = match verb {
                "set" => shown(bucket.set(a, b.as_bytes())),
                "big" => shown(bucket.set(a, &vec![b'x'; number(b) as usize])),
                "longkey" => shown(bucket.set(&"k".repeat(number(a) as usize), b"v")),
                "del" => shown(bucket.delete(a)),
                "get" => match bucket.get(a) {
                    Ok(Some(v)) => format!("some {}", String::from_utf8_lossy(&v)),
                    Ok(None) => "none".to_owned(),
                    Err(e) => format!("err {e}"),
                },
                "list" => {
                    let mut pages = Vec::new();
                    let mut cursor = None::<String>;
                    loop {
                        match bucket.list_keys(cursor.as_deref()) {
                            Ok(page) => {
                                pages.push(page.keys.join(","));
                                match page.cursor {
                                    Some(next) => cursor = Some(next),
                                    None => break,
                                }
                            }
                            Err(e) => {
                                pages.push(format!("err {e}"));
                                break;
                            }
                        }
                        if pages.len() > 1000 {
                            break;
                        }
                    }
                    pages.join("|")
                }
                "open" => {
                    let name: Vec<u8> = (0..a.len() / 2)
                        .map(|i| u8::from_str_radix(&a[2 * i..2 * i + 2], 16).unwrap_or(0))
                        .collect();
                    match kv::open(&String::from_utf8_lossy(&name)) {
                        Ok(_) => "ok".to_owned(),
                        Err(e) => format!("err {e}"),
                    }
                }
                "burn" => {
                    let mut n = 0u64;
                    for _ in 0..number(a) {
                        n = black_box(n.wrapping_add(1));
                    }
                    format!("{n}")
                }
                // A file write in `/data` (the streams probe): an effectful call, whose intent
                // is appended before it runs.
                "file" => run("streams"),
                "trap" => unreachable!("the probe traps"),
                "spin" => {
                    let mut n = 0u64;
                    loop {
                        n = black_box(n.wrapping_add(1));
                    }
                }
                other => format!("unknown op {other}"),
            };
            out.push(line);
        }
        out.join("\n")
    }

    pub fn run(probe: &str) -> String {
        let (name, arg) = probe.split_once(':').unwrap_or((probe, ""));
        match name {
            // `random:N`: N random bytes, as hex.
            "random" => hex(&random::get_random_bytes(number(arg))),
            // Both clocks, as the guest read them.
            "clocks" => {
                let wall = wall_clock::now();
                let mono = monotonic_clock::now();
                format!("{} {} {mono}", wall.seconds, wall.nanoseconds)
            }
            // A timer: the host refuses to wait on wall-clock time.
            "duration" => {
                monotonic_clock::subscribe_duration(1_000_000_000).block();
                "waited".to_owned()
            }
            "instant" => {
                let at = monotonic_clock::now().saturating_add(1_000_000_000);
                monotonic_clock::subscribe_instant(at).block();
                "waited".to_owned()
            }
            // `print:O:E`: O bytes `o` to stdout, E bytes `e` to stderr.
            "print" => {
                let (o, e) = arg.split_once(':').unwrap_or((arg, "0"));
                let refused = fill(&stdout::get_stdout(), b'o', number(o))
                    + fill(&stderr::get_stderr(), b'e', number(e));
                format!("printed, {refused} chunks refused")
            }
            // What the context holds.
            "context" => {
                let env = environment::get_environment();
                let args = environment::get_arguments();
                let cwd = environment::initial_cwd();
                let read = match stdin::get_stdin().blocking_read(4096) {
                    Ok(bytes) => format!("{} bytes", bytes.len()),
                    Err(wasi::io::streams::StreamError::Closed) => "closed".to_owned(),
                    Err(_) => "failed".to_owned(),
                };
                format!(
                    "env={} args={} cwd={} stdin={read} terminals={},{},{}",
                    env.len(),
                    args.len(),
                    cwd.unwrap_or_else(|| "none".to_owned()),
                    terminal_stdin::get_terminal_stdin().is_some(),
                    terminal_stdout::get_terminal_stdout().is_some(),
                    terminal_stderr::get_terminal_stderr().is_some(),
                )
            }
            // `gated:N`: N rounds of both clocks and 8 random bytes, with work between: what
            // the guest read, one `wall-s wall-ns mono random-hex` per round, `;`-separated.
            "gated" => {
                let mut rounds = Vec::new();
                for i in 0..number(arg) {
                    let mut spent = 0u64;
                    for k in 0..1000 * (i + 1) {
                        spent = black_box(spent.wrapping_add(k));
                    }
                    black_box(spent);
                    let wall = wall_clock::now();
                    let mono = monotonic_clock::now();
                    let bytes = random::get_random_bytes(8);
                    rounds.push(format!(
                        "{} {} {mono} {}",
                        wall.seconds,
                        wall.nanoseconds,
                        hex(&bytes)
                    ));
                }
                rounds.join(";")
            }
            // `every-source`: each clock and random function once, in the order of the world,
            // then `streamed` written to stdout: what each answered, `;`-separated.
            "every-source" => {
                let wall = wall_clock::now();
                let wall_resolution = wall_clock::resolution();
                let mono = monotonic_clock::now();
                let mono_resolution = monotonic_clock::resolution();
                let bytes = random::get_random_bytes(8);
                let word = random::get_random_u64();
                let insecure_bytes = insecure::get_insecure_random_bytes(8);
                let insecure_word = insecure::get_insecure_random_u64();
                let (seed_a, seed_b) = insecure_seed::insecure_seed();
                let _ = stdout::get_stdout().blocking_write_and_flush(b"streamed");
                format!(
                    "{} {};{} {};{mono};{mono_resolution};{};{word};{};{insecure_word};{seed_a} {seed_b}",
                    wall.seconds,
                    wall.nanoseconds,
                    wall_resolution.seconds,
                    wall_resolution.nanoseconds,
                    hex(&bytes),
                    hex(&insecure_bytes)
                )
            }
            // `grow`: 1 MiB more of memory at a time, forever.
            "grow" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(black_box(vec![1u8; 1 << 20]));
                }
            }
            // The `variant:*` probes: what the bytes of [`VARIANT`] make them do.
            // `variant:result`: the two bytes, as hex.
            // `variant:fuel`: work as long as the second byte says, then one random byte.
            // `variant:output`: the two bytes written to stdout and to stderr.
            "variant" => {
                let [a, b] = variant();
                match arg {
                    "result" => hex(&[a, b]),
                    "fuel" => {
                        let mut spent = 0u64;
                        for k in 0..u64::from(b) * 100 {
                            spent = black_box(spent.wrapping_add(k));
                        }
                        black_box(spent);
                        hex(&random::get_random_bytes(1))
                    }
                    "output" => {
                        let _ = stdout::get_stdout().blocking_write_and_flush(&[a, b]);
                        let _ = stderr::get_stderr().blocking_write_and_flush(&[b, a]);
                        "written".to_owned()
                    }
                    _ => format!("unknown variant probe {arg}"),
                }
            }
            // `recurse:N`: N frames deep.
            "recurse" => format!("{}", deep(black_box(number(arg)))),
            // The guest's own memory and the host's table of its handles across invocations:
            // a counter it bumps, and a handle it leaves open.
            "fresh" => {
                let calls = CALLS.fetch_add(1, Ordering::SeqCst);
                let stream = stdout::get_stdout();
                let handle = stream.handle();
                std::mem::forget(stream);
                format!("{calls} {handle}")
            }
            // `exit`: ends the invocation through wasi:cli/exit.
            "exit" => {
                exit::exit(Err(()));
                "exited".to_owned()
            }
            // `logs:N:SIZE`: N log calls, each of a message of SIZE bytes (short without).
            "logs" => {
                let (n, size) = arg.split_once(':').unwrap_or((arg, "0"));
                let pad = "p".repeat(number(size) as usize);
                for i in 0..number(n) {
                    let mut line = format!("line {i} {pad}");
                    if !pad.is_empty() {
                        line.truncate(pad.len());
                    }
                    femtoclaw_sdk::log::info(&line);
                }
                "logged".to_owned()
            }
            // `kvlist:N`: N keys `p/…` written, then listed in the same invocation by the
            // store's own listing, page by page: how many keys and pages it gave.
            "kvlist" => {
                let listed = || -> Result<String, femtoclaw_sdk::kv::Error> {
                    let bucket = femtoclaw_sdk::kv::open(super::NAMESPACE)?;
                    for i in 0..number(arg) {
                        bucket.set(&format!("p/{i:05}"), b"v")?;
                    }
                    let (mut keys, mut pages, mut cursor) = (0, 0, None::<String>);
                    loop {
                        let page = bucket.list_keys(cursor.as_deref())?;
                        keys += page.keys.len();
                        pages += 1;
                        match page.cursor {
                            Some(next) => cursor = Some(next),
                            None => break,
                        }
                    }
                    Ok(format!("keys={keys} pages={pages}"))
                };
                listed().unwrap_or_else(|e| format!("failed: {e}"))
            }
            // File writes through a stream, then through `descriptor.write`, in the preopened
            // `/data` (the guest installed under a manifest requesting it).
            "streams" => {
                use wasi::filesystem::types::{DescriptorFlags, OpenFlags, PathFlags};
                let Some((dir, _)) = wasi::filesystem::preopens::get_directories()
                    .into_iter()
                    .find(|(_, path)| path == "/data")
                else {
                    return "no /data".to_owned();
                };
                let file = match dir.open_at(
                    PathFlags::empty(),
                    "streamed.txt",
                    OpenFlags::CREATE,
                    DescriptorFlags::READ | DescriptorFlags::WRITE,
                ) {
                    Ok(file) => file,
                    Err(e) => return format!("open-at failed: {}", e.name()),
                };
                let via = match file.write_via_stream(0) {
                    Ok(stream) => {
                        let _ = stream.blocking_write_and_flush(b"streamed");
                        "accepted".to_owned()
                    }
                    Err(e) => e.name().to_owned(),
                };
                let append = match file.append_via_stream() {
                    Ok(stream) => {
                        let _ = stream.blocking_write_and_flush(b"appended");
                        "accepted".to_owned()
                    }
                    Err(e) => e.name().to_owned(),
                };
                let wrote = match file.write(b"ok", 0) {
                    Ok(n) => n.to_string(),
                    Err(e) => e.name().to_owned(),
                };
                format!("write-via-stream={via} append-via-stream={append} write={wrote}")
            }
            // `fs-every`: each function of `wasi:filesystem` the host gates, once, in `/data`:
            // `function=outcome` for each, `;`-separated, in the order called.
            "fs-every" => {
                use wasi::filesystem::types::{
                    Advice, DescriptorFlags, ErrorCode, NewTimestamp, OpenFlags, PathFlags,
                };
                fn shown<T>(r: Result<T, ErrorCode>) -> String {
                    match r {
                        Ok(_) => "ok".to_owned(),
                        Err(e) => e.name().to_owned(),
                    }
                }
                let mut done = Vec::new();
                let mut note = |function: &str, outcome: String| {
                    done.push(format!("{function}={outcome}"));
                };
                let Some(dir) = data() else {
                    return "no /data".to_owned();
                };
                note("get-directories", "ok".to_owned());
                let none = PathFlags::empty();
                note(
                    "[method]descriptor.create-directory-at",
                    shown(dir.create_directory_at("made")),
                );
                let file = match dir.open_at(
                    none,
                    "every.txt",
                    OpenFlags::CREATE,
                    DescriptorFlags::READ | DescriptorFlags::WRITE,
                ) {
                    Ok(file) => file,
                    Err(e) => return format!("open-at failed: {}", e.name()),
                };
                note("[method]descriptor.open-at", "ok".to_owned());
                note(
                    "[method]descriptor.write",
                    shown(file.write(b"every byte", 0)),
                );
                note("[method]descriptor.read", shown(file.read(5, 0)));
                let streamed = match file.read_via_stream(0) {
                    Ok(stream) => {
                        let got = stream.blocking_read(5).map(|b| b.len()).unwrap_or(0);
                        format!("ok:{got}")
                    }
                    Err(e) => e.name().to_owned(),
                };
                note("[method]descriptor.read-via-stream", streamed);
                note(
                    "[method]descriptor.write-via-stream",
                    shown(file.write_via_stream(0)),
                );
                note(
                    "[method]descriptor.append-via-stream",
                    shown(file.append_via_stream()),
                );
                note(
                    "[method]descriptor.advise",
                    shown(file.advise(0, 0, Advice::Normal)),
                );
                note("[method]descriptor.sync-data", shown(file.sync_data()));
                note("[method]descriptor.sync", shown(file.sync()));
                note("[method]descriptor.get-flags", shown(file.get_flags()));
                note("[method]descriptor.get-type", shown(file.get_type()));
                note("[method]descriptor.set-size", shown(file.set_size(5)));
                note(
                    "[method]descriptor.set-times",
                    shown(file.set_times(NewTimestamp::NoChange, NewTimestamp::NoChange)),
                );
                note("[method]descriptor.stat", shown(file.stat()));
                note(
                    "[method]descriptor.is-same-object",
                    file.is_same_object(&dir).to_string(),
                );
                note(
                    "[method]descriptor.metadata-hash",
                    shown(file.metadata_hash()),
                );
                note(
                    "[method]descriptor.stat-at",
                    shown(dir.stat_at(none, "every.txt")),
                );
                note(
                    "[method]descriptor.metadata-hash-at",
                    shown(dir.metadata_hash_at(none, "every.txt")),
                );
                note(
                    "[method]descriptor.set-times-at",
                    shown(dir.set_times_at(
                        none,
                        "every.txt",
                        NewTimestamp::NoChange,
                        NewTimestamp::NoChange,
                    )),
                );
                note(
                    "[method]descriptor.link-at",
                    shown(dir.link_at(none, "every.txt", &dir, "linked.txt")),
                );
                note(
                    "[method]descriptor.symlink-at",
                    shown(dir.symlink_at("every.txt", "symlinked.txt")),
                );
                note(
                    "[method]descriptor.readlink-at",
                    shown(dir.readlink_at("every.txt")),
                );
                match dir.read_directory() {
                    Ok(entries) => {
                        note("[method]descriptor.read-directory", "ok".to_owned());
                        note(
                            "[method]directory-entry-stream.read-directory-entry",
                            shown(entries.read_directory_entry()),
                        );
                    }
                    Err(e) => note("[method]descriptor.read-directory", e.name().to_owned()),
                }
                note(
                    "[method]descriptor.open-at",
                    shown(dir.open_at(
                        none,
                        "gone.txt",
                        OpenFlags::CREATE,
                        DescriptorFlags::READ | DescriptorFlags::WRITE,
                    )),
                );
                note(
                    "[method]descriptor.rename-at",
                    shown(dir.rename_at("gone.txt", &dir, "renamed.txt")),
                );
                note(
                    "[method]descriptor.unlink-file-at",
                    shown(dir.unlink_file_at("renamed.txt")),
                );
                note(
                    "[method]descriptor.remove-directory-at",
                    shown(dir.remove_directory_at("made")),
                );
                done.join(";")
            }
            // `bigread`: `big.bin` in `/data`: one `descriptor.read` of 4 MiB, then
            // `read-via-stream` with 1 MiB + 1 byte left and with exactly 1 MiB left.
            "bigread" => {
                use wasi::filesystem::types::{DescriptorFlags, OpenFlags, PathFlags};
                let Some(dir) = data() else {
                    return "no /data".to_owned();
                };
                let file = match dir.open_at(
                    PathFlags::empty(),
                    "big.bin",
                    OpenFlags::empty(),
                    DescriptorFlags::READ,
                ) {
                    Ok(file) => file,
                    Err(e) => return format!("open-at failed: {}", e.name()),
                };
                let size = file.stat().map(|s| s.size).unwrap_or(0);
                let read = match file.read(4 << 20, 0) {
                    Ok((bytes, end)) => format!("{}:{end}", bytes.len()),
                    Err(e) => e.name().to_owned(),
                };
                let via = |offset: u64| match file.read_via_stream(offset) {
                    Ok(stream) => {
                        let mut n = 0;
                        while let Ok(bytes) = stream.blocking_read(1 << 16) {
                            n += bytes.len();
                        }
                        format!("stream:{n}")
                    }
                    Err(e) => e.name().to_owned(),
                };
                let over = via(size.saturating_sub((1 << 20) + 1));
                let exact = via(size.saturating_sub(1 << 20));
                format!("read={read} over={over} exact={exact}")
            }
            // `rename:FROM:TO` in `/data`: what `rename-at` answered.
            "rename" => {
                let (from, to) = arg.split_once(':').unwrap_or((arg, ""));
                match data() {
                    Some(dir) => match dir.rename_at(from, &dir, to) {
                        Ok(()) => "ok".to_owned(),
                        Err(e) => e.name().to_owned(),
                    },
                    None => "no /data".to_owned(),
                }
            }
            // `symlink:TARGET:LINK` in `/data`: what `symlink-at` answered.
            "symlink" => {
                let (target, link) = arg.split_once(':').unwrap_or((arg, ""));
                match data() {
                    Some(dir) => match dir.symlink_at(target, link) {
                        Ok(()) => "ok".to_owned(),
                        Err(e) => e.name().to_owned(),
                    },
                    None => "no /data".to_owned(),
                }
            }
            // `kv:OPS`: key-value operations on one bucket of namespace `conformance`, in order,
            // separated by spaces; one result line per operation. `set=K=V`, `big=K=N` (N bytes
            // `x`), `longkey=N` (a key of N bytes `k`), `del=K`, `get=K`, `list` (every page:
            // its keys), `open=HEX` (another namespace, by hex), `burn=N` (N loop turns), `file`
            // (the `streams` probe's file writes), `trap`, `spin`.
            "kv" => kv_ops(arg),
            _ => format!("unknown probe {name}"),
        }
    }
}
