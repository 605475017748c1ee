use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use proptest::prelude::*;

use crate::value::ValueError;
use crate::{
    Config, ConfigError, ConfigFile, Effective, Overrides, Source, check, key, reference,
    splice_reference,
};

const NO_ENV: [(&str, &str); 0] = [];

fn path() -> PathBuf {
    PathBuf::from("/data/femtoclaw.toml")
}

fn parse(text: &str) -> Result<Effective, ConfigError> {
    Config::parse(&path(), text)
}

fn parse_err(text: &str) -> ConfigError {
    match parse(text) {
        Ok(effective) => panic!("accepted:\n{text}\nas\n{}", effective.show()),
        Err(e) => e,
    }
}

fn env_err(env: &[(&str, &str)]) -> ConfigError {
    let file = ConfigFile::Default(PathBuf::from("/nonexistent/femtoclaw.toml"));
    match Config::load(&file, env.iter().copied(), &Overrides::new()) {
        Ok(effective) => panic!("accepted {env:?} as\n{}", effective.show()),
        Err(e) => e,
    }
}

fn load_env(env: &[(&str, &str)]) -> Effective {
    let file = ConfigFile::Default(PathBuf::from("/nonexistent/femtoclaw.toml"));
    Config::load(&file, env.iter().copied(), &Overrides::new()).unwrap()
}

/// The file, line and key of a file error, and its value error if it has one.
fn located(err: &ConfigError) -> (PathBuf, Option<usize>, String) {
    let key = match err {
        ConfigError::UnknownSection { section, .. } => section.clone(),
        ConfigError::NotATable { section, .. } => (*section).to_owned(),
        ConfigError::UnknownKey { key, .. } => key.clone(),
        ConfigError::Invalid { key, .. } => (*key).to_owned(),
        ConfigError::Syntax { .. } => String::new(),
        other => panic!("not a file error: {other}"),
    };
    let path = match err {
        ConfigError::UnknownSection { path, .. }
        | ConfigError::NotATable { path, .. }
        | ConfigError::UnknownKey { path, .. }
        | ConfigError::Invalid { path, .. }
        | ConfigError::Syntax { path, .. } => path.clone(),
        _ => unreachable!(),
    };
    (path, err.line(), key)
}

fn value_error(err: &ConfigError) -> &ValueError {
    match err {
        ConfigError::Invalid { source, .. }
        | ConfigError::Env { source, .. }
        | ConfigError::Flag { source, .. } => source,
        other => panic!("not a value error: {other}"),
    }
}

// ---- defaults ----

// Verifies: FC-CORE-0124, FC-EXEC-0618, FC-CONF-2801
#[test]
fn every_key_has_its_documented_default() {
    let c = Config::default();
    assert_eq!(
        c.server.listen,
        "127.0.0.1:8420".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(c.server.concurrency, 4);
    assert_eq!(c.server.queue, 64);
    assert_eq!(c.server.per_principal, 4);
    assert_eq!(c.server.max_body_bytes, 1_048_576);
    assert_eq!(c.server.request_timeout, Duration::from_millis(60_000));
    assert_eq!(c.server.shutdown_grace, Duration::from_millis(30_000));
    assert_eq!(c.limits.max_fuel, 10_000_000_000);
    assert_eq!(c.limits.deadline, Duration::from_millis(30_000));
    assert_eq!(c.limits.max_recorded_bytes, 67_108_864);
    assert_eq!(c.limits.memory_bytes, 67_108_864);
    assert_eq!(c.ledger.origin, "femtoclaw.local/ledger");
    assert_eq!(c.http.max_request_bytes, 1_048_576);
    assert_eq!(c.http.max_response_bytes, 4_194_304);
    assert_eq!(c.http.timeout, Duration::from_millis(30_000));
    assert_eq!(c.http.max_redirects, 10);
}

// Verifies: FC-CONF-2802
#[test]
fn a_missing_default_file_means_every_default() {
    let dir = tempfile::tempdir().unwrap();
    let effective = Config::load(
        &ConfigFile::in_data_dir(dir.path()),
        NO_ENV,
        &Overrides::new(),
    )
    .unwrap();
    assert_eq!(effective.config(), &Config::default());
    assert!(effective.entries().all(|(_, _, s)| s == &Source::Default));
}

// Verifies: FC-CONF-2802
#[test]
fn an_empty_file_means_every_default() {
    assert_eq!(parse("").unwrap().config(), &Config::default());
    assert_eq!(
        parse("# nothing\n\n[server]\n").unwrap().config(),
        &Config::default()
    );
}

// Verifies: FC-CONF-2820
#[test]
fn a_missing_given_file_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.toml");
    let err = Config::load(
        &ConfigFile::Given(missing.clone()),
        NO_ENV,
        &Overrides::new(),
    )
    .unwrap_err();
    assert!(
        matches!(&err, ConfigError::Missing { path } if *path == missing),
        "{err}"
    );
    assert!(err.to_string().contains("nope.toml"), "{err}");
    assert!(matches!(check(&missing), Err(ConfigError::Missing { .. })));
}

// Verifies: FC-CONF-2820
#[test]
fn an_unreadable_file_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    // A directory where the file should be.
    let err = Config::load(
        &ConfigFile::Default(dir.path().to_owned()),
        NO_ENV,
        &Overrides::new(),
    )
    .unwrap_err();
    assert!(
        matches!(&err, ConfigError::Read { path, .. } if path == dir.path()),
        "{err}"
    );
    let not_utf8 = dir.path().join("femtoclaw.toml");
    std::fs::write(&not_utf8, b"[server]\nlisten = \"\xff\"\n").unwrap();
    assert!(matches!(check(&not_utf8), Err(ConfigError::Read { .. })));
}

// ---- the file ----

// Verifies: FC-CONF-2801, FC-CONF-2805
#[test]
fn the_file_sets_keys_and_records_their_lines() {
    let effective = parse(
        "# the host\n[server]\nlisten = \"[::1]:9000\"\nconcurrency = 8\n\n[limits]\nmax_fuel = 5000\ndeadline_ms = 100\n\n[ledger]\norigin = \"example.com/log\"\n\n[http]\nmax_redirects = 0\n",
    )
    .unwrap();
    let c = effective.config();
    assert_eq!(c.server.listen, "[::1]:9000".parse::<SocketAddr>().unwrap());
    assert_eq!(c.server.concurrency, 8);
    assert_eq!(c.limits.max_fuel, 5000);
    assert_eq!(c.limits.deadline, Duration::from_millis(100));
    assert_eq!(c.ledger.origin, "example.com/log");
    assert_eq!(c.http.max_redirects, 0);
    assert_eq!(c.server.queue, 64, "an unset key keeps its default");
    let at = |line| Source::File { path: path(), line };
    assert_eq!(effective.source(key::server::listen), &at(3));
    assert_eq!(effective.source(key::server::concurrency), &at(4));
    assert_eq!(effective.source(key::limits::max_fuel), &at(7));
    assert_eq!(effective.source(key::limits::deadline), &at(8));
    assert_eq!(effective.source(key::ledger::origin), &at(11));
    assert_eq!(effective.source(key::http::max_redirects), &at(14));
    assert_eq!(effective.source(key::server::queue), &Source::Default);
}

// Verifies: FC-CONF-2803
#[test]
fn dotted_keys_and_inline_tables_are_the_same_keys() {
    let effective = parse("server.concurrency = 2\nlimits = { max_fuel = 7 }\n").unwrap();
    assert_eq!(effective.config().server.concurrency, 2);
    assert_eq!(effective.config().limits.max_fuel, 7);
    assert_eq!(
        effective.source(key::limits::max_fuel),
        &Source::File {
            path: path(),
            line: 2
        }
    );
}

#[test]
fn integers_may_use_toml_forms_in_the_file() {
    let c = parse("[limits]\nmax_fuel = 1_000_000\nmax_recorded_bytes = 0x10000\n")
        .unwrap()
        .into_config();
    assert_eq!(c.limits.max_fuel, 1_000_000);
    assert_eq!(c.limits.max_recorded_bytes, 65536);
}

// Verifies: FC-CONF-2821, FC-CONF-2818
#[test]
fn a_syntax_error_names_the_file_and_the_parsers_line() {
    let err = parse_err("[server]\nconcurrency = 4\nlisten = \n");
    assert!(matches!(err, ConfigError::Syntax { .. }), "{err}");
    assert_eq!(located(&err).0, path());
    assert_eq!(err.line(), Some(3));
    assert!(
        err.to_string()
            .starts_with("`/data/femtoclaw.toml` line 3: "),
        "{err}"
    );
    assert!(
        std::error::Error::source(&err).is_some(),
        "the parser's error is kept"
    );
}

// Verifies: FC-CONF-2821
#[test]
fn a_duplicate_key_is_a_syntax_error_on_its_second_line() {
    let err = parse_err("[limits]\nmax_fuel = 1\nmax_fuel = 2\n");
    assert!(matches!(err, ConfigError::Syntax { .. }), "{err}");
    assert_eq!(err.line(), Some(3));
}

// Verifies: FC-CONF-2803, FC-CONF-2813, FC-CONF-2818, FC-CONF-2819, FC-UPG-3402
#[test]
fn an_unknown_section_is_refused_naming_it_and_its_line() {
    let err = parse_err("[server]\nqueue = 1\n\n[limit]\nmax_fuel = 1\n");
    assert!(matches!(err, ConfigError::UnknownSection { .. }), "{err}");
    assert_eq!(located(&err), (path(), Some(4), "limit".to_owned()));
    assert_eq!(
        err.to_string(),
        "`/data/femtoclaw.toml` line 4: unknown section `[limit]` (the sections are server, limits, engine, quotas, approvals, ledger, mcp, http, telemetry)"
    );
}

// Verifies: FC-CONF-2813
#[test]
fn a_top_level_key_is_an_unknown_section() {
    let err = parse_err("listen = \"127.0.0.1:1\"\n");
    assert_eq!(located(&err), (path(), Some(1), "listen".to_owned()));
}

// Verifies: FC-CONF-2822
#[test]
fn a_section_that_is_not_a_table_is_refused() {
    let err = parse_err("server = 1\n");
    assert!(
        matches!(
            err,
            ConfigError::NotATable {
                found: "integer",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(located(&err), (path(), Some(1), "server".to_owned()));
    let err = parse_err("\n[[http]]\ntimeout_ms = 1\n");
    assert!(
        matches!(err, ConfigError::NotATable { found: "array", .. }),
        "{err}"
    );
    assert_eq!(err.line(), Some(2));
}

// Verifies: FC-CONF-2813, FC-CONF-2818, FC-CONF-2819, FC-UPG-3402
#[test]
fn an_unknown_key_is_refused_naming_section_key_and_line() {
    let err = parse_err("[server]\nlisten = \"127.0.0.1:1\"\nconcurency = 4\n");
    assert!(matches!(err, ConfigError::UnknownKey { .. }), "{err}");
    assert_eq!(
        located(&err),
        (path(), Some(3), "server.concurency".to_owned())
    );
    assert_eq!(
        err.to_string(),
        "`/data/femtoclaw.toml` line 3: unknown key `server.concurency` (`[server]` has listen, concurrency, queue, per_principal, max_body_bytes, request_timeout_ms, shutdown_grace_ms)"
    );
}

// Verifies: FC-CONF-2813
#[test]
fn a_field_name_is_not_a_key_where_the_key_differs() {
    // The field is `deadline`, the key `deadline_ms`.
    let err = parse_err("[limits]\ndeadline = 5\n");
    assert_eq!(
        located(&err),
        (path(), Some(2), "limits.deadline".to_owned())
    );
}

// Verifies: FC-CONF-2822
#[test]
fn a_value_of_the_wrong_type_is_refused() {
    let err = parse_err("[server]\n\nconcurrency = \"4\"\n");
    assert_eq!(
        located(&err),
        (path(), Some(3), "server.concurrency".to_owned())
    );
    assert_eq!(
        value_error(&err),
        &ValueError::WrongType {
            expected: "an integer",
            found: "string"
        }
    );
    let err = parse_err("[server]\nlisten = 8420\n");
    assert_eq!(located(&err), (path(), Some(2), "server.listen".to_owned()));
    assert!(matches!(
        value_error(&err),
        ValueError::WrongType {
            found: "integer",
            ..
        }
    ));
    let err = parse_err("[limits]\nmax_fuel = 1.5\n");
    assert!(matches!(
        value_error(&err),
        ValueError::WrongType { found: "float", .. }
    ));
    let err = parse_err("[ledger]\norigin = true\n");
    assert!(matches!(
        value_error(&err),
        ValueError::WrongType {
            found: "boolean",
            ..
        }
    ));
    let err = parse_err("[http]\n[http.timeout_ms]\n");
    assert!(matches!(
        value_error(&err),
        ValueError::WrongType { found: "table", .. }
    ));
}

// Verifies: FC-CONF-2815
#[test]
fn a_bad_socket_address_is_refused() {
    let err = parse_err("[server]\nlisten = \"nope\"\n");
    assert_eq!(located(&err), (path(), Some(2), "server.listen".to_owned()));
    assert_eq!(
        value_error(&err),
        &ValueError::NotSocketAddr {
            text: "nope".into()
        }
    );
    // A host name is not an address: nothing is looked up.
    let err = parse_err("[server]\nlisten = \"localhost:8420\"\n");
    assert!(matches!(
        value_error(&err),
        ValueError::NotSocketAddr { .. }
    ));
}

// Verifies: FC-EXEC-0617, FC-CONF-2814
#[test]
fn a_value_under_its_least_is_refused() {
    for (text, key, min) in [
        ("[server]\nconcurrency = 0\n", "server.concurrency", 1),
        ("[server]\nper_principal = 0\n", "server.per_principal", 1),
        ("[server]\nmax_body_bytes = 0\n", "server.max_body_bytes", 1),
        (
            "[server]\nrequest_timeout_ms = 0\n",
            "server.request_timeout_ms",
            1,
        ),
        (
            "[server]\nshutdown_grace_ms = 0\n",
            "server.shutdown_grace_ms",
            1,
        ),
        ("[limits]\nmax_fuel = 0\n", "limits.max_fuel", 1),
        ("[limits]\ndeadline_ms = 0\n", "limits.deadline_ms", 1),
        (
            "[limits]\nmax_recorded_bytes = 0\n",
            "limits.max_recorded_bytes",
            1,
        ),
        (
            "[limits]\nmemory_bytes = 65535\n",
            "limits.memory_bytes",
            65536,
        ),
        ("[http]\ntimeout_ms = 0\n", "http.timeout_ms", 1),
    ] {
        let err = parse_err(text);
        assert_eq!(located(&err), (path(), Some(2), key.to_owned()), "{text}");
        assert!(
            matches!(value_error(&err), ValueError::TooSmall { min: m, .. } if *m == min),
            "{err}"
        );
    }
    // At the least is fine; zero is fine where the least is zero.
    let c = parse("[limits]\nmemory_bytes = 65536\n[server]\nqueue = 0\n[http]\nmax_request_bytes = 0\nmax_redirects = 0\n")
        .unwrap()
        .into_config();
    assert_eq!(c.limits.memory_bytes, 65536);
    assert_eq!(c.server.queue, 0);
}

// Verifies: FC-CONF-2814
#[test]
fn a_negative_value_is_refused() {
    let err = parse_err("[server]\nqueue = -1\n");
    assert_eq!(
        value_error(&err),
        &ValueError::TooSmall {
            value: "-1".into(),
            min: 0
        }
    );
}

// Verifies: FC-CONF-2814
#[test]
fn a_value_over_its_type_is_refused() {
    let err = parse_err("[http]\nmax_redirects = 4294967296\n");
    assert_eq!(
        located(&err),
        (path(), Some(2), "http.max_redirects".to_owned())
    );
    assert_eq!(
        value_error(&err),
        &ValueError::TooLarge {
            value: "4294967296".into(),
            max: u64::from(u32::MAX)
        }
    );
    // Past what TOML integers hold, so `show` never writes a value TOML cannot read.
    let err = parse_err("[limits]\nmax_fuel = 9223372036854775808\n");
    assert!(
        matches!(value_error(&err), ValueError::TooLarge { max, .. } if *max == i64::MAX as u64),
        "{err}"
    );
    let err = parse_err("[limits]\nmax_fuel = 99999999999999999999999999999999999999999\n");
    assert!(
        matches!(value_error(&err), ValueError::TooLarge { .. }),
        "{err}"
    );
}

// Verifies: FC-CONF-2815
#[test]
fn a_bad_origin_is_refused() {
    for (origin, why) in [
        ("", "it is empty"),
        ("a b", "it contains whitespace"),
        ("a\\tb", "it contains whitespace"),
        ("a\\u0000b", "it contains a control character"),
    ] {
        let err = parse_err(&format!("[ledger]\norigin = \"{origin}\"\n"));
        assert_eq!(located(&err), (path(), Some(2), "ledger.origin".to_owned()));
        assert!(
            matches!(value_error(&err), ValueError::NotOrigin { why: w, .. } if *w == why),
            "{origin}: {err}"
        );
    }
    assert_eq!(
        parse_err("[ledger]\norigin = \"a b\"\n").to_string(),
        "`/data/femtoclaw.toml` line 2: `ledger.origin` `a b` is not a checkpoint origin: it contains whitespace"
    );
}

// Verifies: FC-CONF-2823
#[test]
fn of_several_errors_the_first_in_the_file_is_reported() {
    let err =
        parse_err("[server]\nqueue = 1\nzzz = 1\n\n[http]\naaa = 2\n[ledger]\norigin = \"\"\n");
    assert_eq!(located(&err), (path(), Some(3), "server.zzz".to_owned()));
    let err = parse_err("[limits]\nmax_fuel = 0\n[bogus]\n");
    assert_eq!(err.line(), Some(2));
}

// Verifies: FC-CONF-2809
#[test]
fn check_accepts_a_good_file_and_refuses_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("femtoclaw.toml");
    std::fs::write(&file, "[server]\nconcurrency = 2\n").unwrap();
    check(&file).unwrap();
    std::fs::write(&file, "[server]\nconcurrency = 2\nlisten = \"nope\"\n").unwrap();
    let err = check(&file).unwrap_err();
    assert_eq!(
        located(&err),
        (file.clone(), Some(3), "server.listen".to_owned())
    );
}

// ---- the environment ----

// Verifies: FC-EXEC-0619, FC-CONF-2804, FC-CONF-2805
#[test]
fn the_environment_sets_keys_and_names_its_variables() {
    let effective = load_env(&[
        ("FEMTOCLAW_SERVER_LISTEN", "0.0.0.0:80"),
        ("FEMTOCLAW_LIMITS_DEADLINE_MS", "100"),
        ("FEMTOCLAW_LEDGER_ORIGIN", "example.com/x"),
        ("FEMTOCLAW_HTTP_MAX_REDIRECTS", "3"),
    ]);
    let c = effective.config();
    assert_eq!(c.server.listen, "0.0.0.0:80".parse::<SocketAddr>().unwrap());
    assert_eq!(c.limits.deadline, Duration::from_millis(100));
    assert_eq!(c.ledger.origin, "example.com/x");
    assert_eq!(c.http.max_redirects, 3);
    assert_eq!(
        effective.source(key::limits::deadline),
        &Source::Env {
            var: "FEMTOCLAW_LIMITS_DEADLINE_MS".into()
        }
    );
    assert_eq!(
        key::limits::deadline.env_var(),
        "FEMTOCLAW_LIMITS_DEADLINE_MS"
    );
}

// Verifies: FC-CONF-2818
#[test]
fn a_bad_environment_value_is_refused_naming_the_variable() {
    let err = env_err(&[("FEMTOCLAW_SERVER_LISTEN", "x")]);
    assert!(
        matches!(&err, ConfigError::Env { var, key: "server.listen", .. } if var == "FEMTOCLAW_SERVER_LISTEN"),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "environment variable `FEMTOCLAW_SERVER_LISTEN` (`server.listen`): `x` is not a socket address (such as `127.0.0.1:8420` or `[::1]:8420`)"
    );
    let err = env_err(&[("FEMTOCLAW_SERVER_CONCURRENCY", "0")]);
    assert!(
        matches!(value_error(&err), ValueError::TooSmall { min: 1, .. }),
        "{err}"
    );
    let err = env_err(&[("FEMTOCLAW_LEDGER_ORIGIN", "a b")]);
    assert!(
        matches!(value_error(&err), ValueError::NotOrigin { .. }),
        "{err}"
    );
}

// Verifies: FC-CONF-2804, FC-CONF-2822
#[test]
fn environment_integers_are_plain_digits() {
    for text in ["1_000", "-1", "+1", "0x10", " 1", "1 ", "", "1.0", "٣"] {
        let err = env_err(&[("FEMTOCLAW_LIMITS_MAX_FUEL", text)]);
        assert_eq!(
            value_error(&err),
            &ValueError::NotPlainInteger { text: text.into() },
            "{text:?}"
        );
        assert!(err.to_string().contains("plain integer"), "{err}");
    }
    let err = env_err(&[(
        "FEMTOCLAW_LIMITS_MAX_FUEL",
        "99999999999999999999999999999999999999999",
    )]);
    assert!(
        matches!(value_error(&err), ValueError::TooLarge { .. }),
        "{err}"
    );
}

// Verifies: FC-CONF-2813, FC-UPG-3403
#[test]
fn a_misspelt_config_variable_is_refused_naming_it() {
    let err = env_err(&[("FEMTOCLAW_SERVER_LISTN", "127.0.0.1:1")]);
    assert!(
        matches!(&err, ConfigError::UnknownEnv { var, section: "server", .. } if var == "FEMTOCLAW_SERVER_LISTN"),
        "{err}"
    );
    assert!(
        err.to_string().contains("`FEMTOCLAW_SERVER_LISTN`"),
        "{err}"
    );
    // The field's name is not the key's.
    let err = env_err(&[("FEMTOCLAW_LIMITS_DEADLINE", "5")]);
    assert!(matches!(err, ConfigError::UnknownEnv { .. }), "{err}");
    let err = env_err(&[("FEMTOCLAW_HTTP_", "5")]);
    assert!(matches!(err, ConfigError::UnknownEnv { .. }), "{err}");
}

// Verifies: FC-CONF-2806
#[test]
fn variables_that_are_not_config_are_ignored() {
    let effective = load_env(&[
        ("FEMTOCLAW_POLICY", "/x/policy.cedar"),
        ("FEMTOCLAW_TOKEN", "secret"),
        ("FEMTOCLAW_DATA_DIR", "/x"),
        ("FEMTOCLAW_BLESS", "1"),
        ("FEMTOCLAW_SERVER", "1"),
        ("FEMTOCLAW_SERVERS_LISTEN", "1"),
        ("FEMTOCLAW_server_listen", "1"),
        ("femtoclaw_server_listen", "1"),
        ("SERVER_LISTEN", "1"),
        ("PATH", "/bin"),
    ]);
    assert_eq!(effective.config(), &Config::default());
}

// Verifies: FC-CONF-2806
#[cfg(unix)]
#[test]
fn a_config_variable_that_is_not_unicode_is_refused_and_a_name_that_is_not_is_ignored() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let file = ConfigFile::Default(PathBuf::from("/nonexistent/femtoclaw.toml"));
    let bad = OsStr::from_bytes(b"\xff");
    let err = Config::load(
        &file,
        [(OsStr::new("FEMTOCLAW_SERVER_LISTEN"), bad)],
        &Overrides::new(),
    )
    .unwrap_err();
    assert!(matches!(err, ConfigError::EnvNotUnicode { .. }), "{err}");
    let name = OsStr::from_bytes(b"FEMTOCLAW_SERVER_\xff");
    let effective = Config::load(&file, [(name, OsStr::new("1"))], &Overrides::new()).unwrap();
    assert_eq!(effective.config(), &Config::default());
}

// Verifies: FC-CONF-2823
#[test]
fn of_several_bad_variables_the_first_by_name_is_reported() {
    let err = env_err(&[
        ("FEMTOCLAW_SERVER_ZZZ", "1"),
        ("FEMTOCLAW_HTTP_TIMEOUT_MS", "0"),
        ("FEMTOCLAW_LIMITS_MAX_FUEL", "x"),
    ]);
    assert!(
        matches!(&err, ConfigError::Env { var, .. } if var == "FEMTOCLAW_HTTP_TIMEOUT_MS"),
        "{err}"
    );
}

// ---- flags and precedence ----

// Verifies: FC-CONF-2818
#[test]
fn a_bad_flag_value_is_refused_naming_the_flag() {
    let file = ConfigFile::Default(PathBuf::from("/nonexistent/femtoclaw.toml"));
    let flags = Overrides::new().with(key::server::listen, "--listen", "nope");
    let err = Config::load(&file, NO_ENV, &flags).unwrap_err();
    assert!(
        matches!(&err, ConfigError::Flag { flag, key: "server.listen", .. } if flag == "--listen"),
        "{err}"
    );
    assert!(
        err.to_string()
            .starts_with("`--listen` (`server.listen`): "),
        "{err}"
    );
}

// Verifies: FC-CONF-2805
/// The file sets all four keys, the environment three, the flags two: each key shows the
/// layer that wins it.
#[test]
fn flag_over_environment_over_file_over_default() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("femtoclaw.toml");
    std::fs::write(
        &file,
        "[limits]\nmax_fuel = 1\ndeadline_ms = 1\nmax_recorded_bytes = 1\n[server]\nqueue = 1\n",
    )
    .unwrap();
    let env = [
        ("FEMTOCLAW_LIMITS_MAX_FUEL", "2"),
        ("FEMTOCLAW_LIMITS_DEADLINE_MS", "2"),
        ("FEMTOCLAW_SERVER_QUEUE", "2"),
    ];
    let flags = Overrides::new()
        .with(key::limits::max_fuel, "--max-fuel", "3")
        .with(key::server::queue, "--queue", "3");
    let effective = Config::load(&ConfigFile::Given(file.clone()), env, &flags).unwrap();
    let c = effective.config();
    assert_eq!(c.limits.max_fuel, 3);
    assert_eq!(c.server.queue, 3);
    assert_eq!(c.limits.deadline, Duration::from_millis(2));
    assert_eq!(c.limits.max_recorded_bytes, 1);
    assert_eq!(c.limits.memory_bytes, 64 << 20);
    assert_eq!(
        effective.source(key::limits::max_fuel),
        &Source::Flag {
            flag: "--max-fuel".into()
        }
    );
    assert_eq!(
        effective.source(key::limits::deadline),
        &Source::Env {
            var: "FEMTOCLAW_LIMITS_DEADLINE_MS".into()
        }
    );
    assert_eq!(
        effective.source(key::limits::max_recorded_bytes),
        &Source::File {
            path: file,
            line: 4
        }
    );
    assert_eq!(
        effective.source(key::limits::memory_bytes),
        &Source::Default
    );
}

// Verifies: FC-CONF-2823
#[test]
fn a_later_layer_does_not_excuse_an_earlier_error() {
    // Overriding a bad file value still refuses the file: it is wrong wherever it is read.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("femtoclaw.toml");
    std::fs::write(&file, "[server]\nlisten = \"nope\"\n").unwrap();
    let flags = Overrides::new().with(key::server::listen, "--listen", "127.0.0.1:1");
    let err = Config::load(&ConfigFile::Given(file), NO_ENV, &flags).unwrap_err();
    assert!(matches!(err, ConfigError::Invalid { .. }), "{err}");
}

// Verifies: FC-CONF-2807
#[test]
fn a_flag_given_twice_keeps_the_last() {
    let file = ConfigFile::Default(PathBuf::from("/nonexistent/femtoclaw.toml"));
    let mut flags = Overrides::new();
    flags
        .set(key::server::concurrency, "--concurrency", "2")
        .set(key::server::concurrency, "--concurrency", "5");
    let effective = Config::load(&file, NO_ENV, &flags).unwrap();
    assert_eq!(effective.config().server.concurrency, 5);
}

// ---- show ----

// Verifies: FC-CONF-2808
#[test]
fn show_writes_each_value_with_its_source() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("femtoclaw.toml");
    std::fs::write(&file, "[limits]\n\nmax_fuel = 5000\n").unwrap();
    let effective = Config::load(
        &ConfigFile::Given(file.clone()),
        [("FEMTOCLAW_LIMITS_DEADLINE_MS", "100")],
        &Overrides::new().with(key::server::concurrency, "--concurrency", "2"),
    )
    .unwrap();
    let shown = effective.show();
    let lines: Vec<&str> = shown.lines().collect();
    assert!(
        lines.contains(&"listen = \"127.0.0.1:8420\"  # default"),
        "{shown}"
    );
    assert!(
        lines.contains(&"concurrency = 2  # flag --concurrency"),
        "{shown}"
    );
    assert!(
        lines.contains(&format!("max_fuel = 5000  # file {}:3", file.display()).as_str()),
        "{shown}"
    );
    assert!(
        lines.contains(&"deadline_ms = 100  # env FEMTOCLAW_LIMITS_DEADLINE_MS"),
        "{shown}"
    );
    assert!(
        lines.contains(&"origin = \"femtoclaw.local/ledger\"  # default"),
        "{shown}"
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with('['))
            .copied()
            .collect::<Vec<_>>(),
        [
            "[server]",
            "[limits]",
            "[engine]",
            "[quotas]",
            "[approvals]",
            "[ledger]",
            "[mcp]",
            "[http]",
            "[telemetry]"
        ]
    );
    assert_eq!(effective.to_string(), shown);
}

// Verifies: FC-CONF-2808
#[test]
fn show_reads_back_as_the_same_config() {
    let effective = load_env(&[
        ("FEMTOCLAW_SERVER_LISTEN", "[fe80::1%2]:1"),
        ("FEMTOCLAW_LEDGER_ORIGIN", "o\"r\\i'g/in"),
        ("FEMTOCLAW_LIMITS_MAX_FUEL", "9223372036854775807"),
    ]);
    let again = Config::parse(Path::new("/shown.toml"), &effective.show()).unwrap();
    assert_eq!(again.config(), effective.config());
}

// Verifies: FC-CONF-2808
#[test]
fn show_escapes_a_path_that_would_break_its_comment() {
    let odd = PathBuf::from("/x\n[server]\nlisten = 1/femtoclaw.toml");
    let effective = Config::parse(&odd, "[server]\nqueue = 3\n").unwrap();
    let shown = effective.show();
    assert!(
        shown.contains("queue = 3  # file /x\\n[server]\\nlisten = 1/femtoclaw.toml:2"),
        "{shown}"
    );
    let again = Config::parse(Path::new("/shown.toml"), &shown).unwrap();
    assert_eq!(again.config(), effective.config());
}

// ---- the reference ----

// Verifies: FC-CONF-2810
#[test]
fn the_reference_has_a_row_for_every_key() {
    let table = reference();
    let rows: Vec<&str> = table.lines().skip(2).collect();
    let keys: Vec<String> = load_env(&[])
        .entries()
        .map(|(k, _, _)| k.name().to_owned())
        .collect();
    assert_eq!(rows.len(), keys.len());
    for (row, key) in rows.iter().zip(&keys) {
        assert!(row.starts_with(&format!("| `{key}` |")), "{row}");
    }
    assert!(
        table.starts_with(
            "| key | type | default | environment | meaning |\n|---|---|---|---|---|\n"
        )
    );
    assert!(table.contains(
        "| `server.listen` | socket address | `\"127.0.0.1:8420\"` | `FEMTOCLAW_SERVER_LISTEN` | The socket address the HTTP API and MCP listen on. |"
    ), "{table}");
    assert!(table.contains(
        "| `limits.memory_bytes` | integer ≥ 65536 | `67108864` | `FEMTOCLAW_LIMITS_MEMORY_BYTES` |"
    ), "{table}");
    assert!(
        table.contains(
            "| `limits.deadline_ms` | milliseconds ≥ 1 | `30000` | `FEMTOCLAW_LIMITS_DEADLINE_MS` |"
        ),
        "{table}"
    );
    assert!(table.contains(
        "| `ledger.origin` | string (not empty, no whitespace or control characters) | `\"femtoclaw.local/ledger\"` |"
    ), "{table}");
}

// Verifies: FC-CONF-2810
#[test]
fn a_document_keeps_its_copy_of_the_reference_current() {
    let current = format!(
        "# Config\n\nintro\n\n{}\n{}{}\n\nmore\n",
        crate::REFERENCE_START,
        reference(),
        crate::REFERENCE_END
    );
    assert_eq!(
        splice_reference(&current).as_deref(),
        Some(current.as_str())
    );
    let stale = current.replace("`server.listen`", "`server.address`");
    assert_ne!(stale, current);
    assert_eq!(splice_reference(&stale).as_deref(), Some(current.as_str()));
    let empty = format!(
        "a\n{}\n{}\nb\n",
        crate::REFERENCE_START,
        crate::REFERENCE_END
    );
    let filled = splice_reference(&empty).unwrap();
    assert!(filled.contains(&reference()), "{filled}");
    assert_eq!(splice_reference(&filled).as_deref(), Some(filled.as_str()));
    assert_eq!(splice_reference("no markers"), None);
    let reversed = format!("{}\n{}\n", crate::REFERENCE_END, crate::REFERENCE_START);
    assert_eq!(splice_reference(&reversed), None);
}

/// A schema with one more key than a two-key base: the key is described once, and the
/// struct, its default, the file, the environment, `show` and the reference all have it.
mod added_key {
    use std::path::Path;

    use crate::load::{Layered, Overrides};
    use crate::schema::schema;
    use crate::show::reference_of;
    use crate::value::Rule;

    schema! {
        /// A test configuration.
        pub struct Test;

        /// The only section.
        [server] Server {
            /// The first key.
            first: u64 = 1;
            /// The added key,
            /// over two lines | with a pipe.
            added as added_ms: std::time::Duration = std::time::Duration::from_millis(7), Rule::AtLeast(2);
        }
    }

    // Verifies: FC-CONF-2810
    #[test]
    fn an_added_key_appears_everywhere() {
        assert_eq!(
            Test::default().server.added,
            std::time::Duration::from_millis(7)
        );
        let table = reference_of::<Test>();
        assert!(table.contains(
            "| `server.added_ms` | milliseconds ≥ 2 | `7` | `FEMTOCLAW_SERVER_ADDED_MS` | The added key, over two lines \\| with a pipe. |"
        ), "{table}");

        let mut layered = Layered::<Test>::defaults();
        layered
            .apply_file(Path::new("/t.toml"), "[server]\nadded_ms = 9\n")
            .unwrap();
        assert_eq!(
            layered.config.server.added,
            std::time::Duration::from_millis(9)
        );
        let err = Layered::<Test>::defaults()
            .apply_file(Path::new("/t.toml"), "[server]\nadded_ms = 1\n")
            .unwrap_err();
        assert_eq!(err.line(), Some(2));

        layered
            .apply_env([("FEMTOCLAW_SERVER_ADDED_MS", "11")])
            .unwrap();
        assert_eq!(
            layered.config.server.added,
            std::time::Duration::from_millis(11)
        );
        layered
            .apply_flags(&Overrides::new().with(key::server::first, "--first", "5"))
            .unwrap();
        assert_eq!(layered.config.server.first, 5);
        assert_eq!(
            layered.show(),
            "[server]\nfirst = 5  # flag --first\nadded_ms = 11  # env FEMTOCLAW_SERVER_ADDED_MS\n"
        );
    }
}

// ---- no input panics ----

proptest! {
    // Verifies: FC-CONF-2817
    #[test]
    fn any_file_text_is_loaded_or_refused(text in "(\\PC|\n){0,200}") {
        let _ = parse(&text);
    }

    // Verifies: FC-CONF-2817
    #[test]
    fn any_toml_like_file_is_loaded_or_refused(
        lines in proptest::collection::vec(
            "(\\[(server|limits|ledger|http|x)\\]|(listen|queue|max_fuel|origin|deadline_ms|memory_bytes|max_redirects|y) = (-?[0-9]{1,25}|\"[ -~]{0,12}\"|true|1\\.5|\\[\\]))",
            0..12,
        )
    ) {
        let text = lines.join("\n");
        if let Err(e) = parse(&text) {
            // Every file error carries the file, and a line in it.
            let line = e.line().unwrap_or(1);
            prop_assert!(line >= 1 && line <= lines.len().max(1), "{e}");
            prop_assert!(e.to_string().contains("/data/femtoclaw.toml"), "{e}");
        }
    }

    // Verifies: FC-CONF-2817
    #[test]
    fn any_environment_value_is_loaded_or_refused(value in "\\PC{0,30}") {
        let file = ConfigFile::Default(PathBuf::from("/nonexistent/femtoclaw.toml"));
        for var in ["FEMTOCLAW_SERVER_LISTEN", "FEMTOCLAW_LIMITS_MAX_FUEL", "FEMTOCLAW_LEDGER_ORIGIN", "FEMTOCLAW_HTTP_TIMEOUT_MS"] {
            let _ = Config::load(&file, [(var, value.as_str())], &Overrides::new());
        }
    }

    // Verifies: FC-CONF-2808
    #[test]
    fn any_accepted_config_shows_as_itself(
        concurrency in 1usize..1000,
        queue in 0usize..1000,
        max_fuel in 1u64..=i64::MAX as u64,
        deadline in 1u64..=i64::MAX as u64,
        memory in 65536usize..=1 << 40,
        redirects in 0u32..=u32::MAX,
        origin in "[!-~]{1,20}",
        port in 0u16..=u16::MAX,
    ) {
        let env = [
            ("FEMTOCLAW_SERVER_CONCURRENCY", concurrency.to_string()),
            ("FEMTOCLAW_SERVER_QUEUE", queue.to_string()),
            ("FEMTOCLAW_SERVER_LISTEN", format!("[::1]:{port}")),
            ("FEMTOCLAW_LIMITS_MAX_FUEL", max_fuel.to_string()),
            ("FEMTOCLAW_LIMITS_DEADLINE_MS", deadline.to_string()),
            ("FEMTOCLAW_LIMITS_MEMORY_BYTES", memory.to_string()),
            ("FEMTOCLAW_HTTP_MAX_REDIRECTS", redirects.to_string()),
            ("FEMTOCLAW_LEDGER_ORIGIN", origin),
        ];
        let file = ConfigFile::Default(PathBuf::from("/nonexistent/femtoclaw.toml"));
        let effective = Config::load(&file, env, &Overrides::new()).unwrap();
        let again = Config::parse(Path::new("/shown.toml"), &effective.show()).unwrap();
        prop_assert_eq!(again.config(), effective.config());
    }
}

// Verifies: FC-CONF-2804, FC-CONF-2822
#[test]
fn lists_of_strings_come_from_arrays_or_comma_separated_text() {
    let effective =
        parse("[mcp]\ntools_allow = [\"hello.greet\", \"textstats.analyze\"]\n").unwrap();
    assert_eq!(
        effective.config().mcp.tools_allow,
        ["hello.greet", "textstats.analyze"]
    );
    let again = Config::parse(Path::new("/shown.toml"), &effective.show()).unwrap();
    assert_eq!(again.config(), effective.config());
    let err = parse_err("[mcp]\ntools_deny = [\"a\", 7]\n");
    assert!(
        err.to_string()
            .contains("`mcp.tools_deny` element 1 of the list: expected a string, found integer"),
        "{err}"
    );
    let err = parse_err("[mcp]\ntools_deny = \"a\"\n");
    assert!(
        err.to_string().contains("expected an array of strings"),
        "{err}"
    );
    let file = ConfigFile::Default(PathBuf::from("/nonexistent/femtoclaw.toml"));
    let env = [(
        std::ffi::OsString::from("FEMTOCLAW_MCP_ALLOWED_ORIGINS"),
        std::ffi::OsString::from("https://a.example, http://localhost:3000,"),
    )];
    let effective = Config::load(&file, env, &Overrides::new()).unwrap();
    assert_eq!(
        effective.config().mcp.allowed_origins,
        ["https://a.example", "http://localhost:3000"]
    );
}

// Verifies: FC-OPS-4001
#[test]
fn quota_rules_are_read_from_tables_and_from_inline_toml_in_the_environment() {
    let file = parse(
        "[[quotas.rules]]\nprincipal = \"agent:crawler\"\ncapability = \"fetch\"\n\
         invocations = 10\nburst = 2\nper_ms = 1000\n\n\
         [[quotas.rules]]\nconcurrent = 3\nfuel = 5000\nshared = true\n",
    )
    .unwrap();
    let rules = &file.config().quotas.rules;
    assert_eq!(rules.len(), 2);
    assert_eq!(
        rules[0],
        crate::QuotaRule {
            principal: "agent:crawler".into(),
            capability: "fetch".into(),
            invocations: Some(10),
            burst: Some(2),
            per: Duration::from_millis(1000),
            ..crate::QuotaRule::default()
        }
    );
    assert_eq!(
        (rules[1].principal.as_str(), rules[1].capability.as_str()),
        ("*", "*")
    );
    assert_eq!(
        (rules[1].concurrent, rules[1].fuel, rules[1].shared),
        (Some(3), Some(5000), true)
    );
    // What `show` writes reads back as the same rules.
    let shown = file.show();
    assert_eq!(
        parse(&shown).unwrap().config().quotas.rules,
        *rules,
        "{shown}"
    );

    let env = load_env(&[(
        "FEMTOCLAW_QUOTAS_RULES",
        "[{ principal = \"group:bots\", invocations = 5 }]",
    )]);
    assert_eq!(env.config().quotas.rules[0].principal, "group:bots");
    assert_eq!(env.config().quotas.rules[0].invocations, Some(5));
}

// Verifies: FC-OPS-4001
#[test]
fn a_bad_quota_rule_is_refused_naming_the_rule_and_what_is_wrong() {
    for (text, says) in [
        (
            "invocations = 0",
            "rule 0 (from 0): `invocations` must be at least 1, not `0`",
        ),
        (
            "invocations = 1\nrate = 2",
            "rule 0 (from 0): unknown key `rate`",
        ),
        ("capability = \"fetch\"", "rule 0 (from 0): sets no limit"),
        (
            "principal = \"crawler\"\nconcurrent = 1",
            "is not `*`, `agent:ID`, `user:ID` or `group:NAME`",
        ),
        (
            "shared = \"yes\"\nconcurrent = 1",
            "`shared` expected a boolean, found string",
        ),
        ("burst = 3\nfuel = 10", "`burst` without `invocations`"),
    ] {
        let err = parse_err(&format!("[[quotas.rules]]\n{text}\n"));
        assert!(err.to_string().contains(says), "{text}: {err}");
        assert!(err.to_string().contains("`quotas.rules`"), "{err}");
    }
    let err = env_err(&[("FEMTOCLAW_QUOTAS_RULES", "[{ invocations = ")]);
    assert!(err.to_string().contains("is not inline TOML"), "{err}");
    assert!(err.to_string().contains("FEMTOCLAW_QUOTAS_RULES"), "{err}");
}

// Verifies: FC-CONF-2815
/// The telemetry keys take only what they describe: an endpoint is empty or an HTTP(S) URL, a
/// protocol one of those listed, a metrics address empty or a socket address; each refusal
/// names the key.
#[test]
fn telemetry_keys_refuse_what_they_do_not_describe_naming_the_key() {
    let effective = parse(
        "[telemetry]\notlp_endpoint = \"http://127.0.0.1:4318\"\notlp_protocol = \"grpc\"\nmetrics_listen = \"127.0.0.1:9464\"\n",
    )
    .unwrap();
    let config = effective.config();
    assert_eq!(config.telemetry.otlp_endpoint, "http://127.0.0.1:4318");
    assert_eq!(config.telemetry.otlp_protocol, "grpc");
    assert_eq!(config.telemetry.metrics_listen, "127.0.0.1:9464");
    assert_eq!(Config::default().telemetry.otlp_endpoint, "");
    for (file, key, wrong) in [
        (
            "otlp_endpoint = \"127.0.0.1:4318\"",
            "telemetry.otlp_endpoint",
            "is not an `http://` or `https://` URL",
        ),
        (
            "otlp_endpoint = \"http://\"",
            "telemetry.otlp_endpoint",
            "is not an `http://` or `https://` URL",
        ),
        (
            "otlp_protocol = \"http/json\"",
            "telemetry.otlp_protocol",
            "is not one of `\"\"`, `\"http/protobuf\"`, `\"grpc\"`",
        ),
        (
            "metrics_listen = \"localhost\"",
            "telemetry.metrics_listen",
            "is not a socket address",
        ),
    ] {
        let err = parse_err(&format!("[telemetry]\n{file}\n"));
        let said = err.to_string();
        assert!(said.contains(key) && said.contains(wrong), "{said}");
    }
}

// Verifies: FC-EXEC-0404
#[test]
fn cpu_features_to_leave_unused_are_feature_flags() {
    let err = parse_err("[engine]\ndisabled_cpu_features = [\"has_avx2\", \"opt_level\"]\n");
    assert_eq!(
        err.to_string(),
        "`/data/femtoclaw.toml` line 2: `engine.disabled_cpu_features` element 1 of the list: `opt_level` is not a CPU feature flag (`has_` and lowercase letters, digits or `_`, such as `has_avx2`)"
    );
    let err = env_err(&[(
        "FEMTOCLAW_ENGINE_DISABLED_CPU_FEATURES",
        "has_avx2,HAS_BMI2",
    )]);
    assert!(
        err.to_string()
            .contains("`HAS_BMI2` is not a CPU feature flag"),
        "{err}"
    );
    let effective = load_env(&[(
        "FEMTOCLAW_ENGINE_DISABLED_CPU_FEATURES",
        "has_avx2, has_bmi2",
    )]);
    assert_eq!(
        effective.config().engine.disabled_cpu_features,
        ["has_avx2", "has_bmi2"]
    );
}
