//! The host's configuration, `<data dir>/femtoclaw.toml` (or `--config`), with environment and
//! flag overrides over the embedded defaults (the schema is `femtoclaw-config`'s), and what it
//! means for the sandbox: one place for each setting.

use std::path::Path;

use femtoclaw_config::{Config, ConfigFile, Effective, Overrides};
use femtoclaw_sandbox::HttpLimits;

use crate::exit::{Code, Failure};

/// Files of earlier versions whose settings are now sections of `femtoclaw.toml`.
const MOVED: [(&str, &str); 2] = [("limits.toml", "limits"), ("http.toml", "http")];

/// Loads the configuration: the defaults, then `given` (or `<data dir>/femtoclaw.toml` when it
/// exists), then `FEMTOCLAW_<SECTION>_<KEY>` variables, then `flags`. A file of an earlier
/// version whose settings moved into `femtoclaw.toml` is refused, named, so no setting is
/// silently ignored.
pub fn load(
    data_dir: &Path,
    given: Option<&Path>,
    flags: &Overrides,
) -> Result<Effective, Failure> {
    for (file, section) in MOVED {
        let path = data_dir.join(file);
        if path.exists() {
            return Err(Failure::new(
                Code::InvalidArgs,
                format!(
                    "`{}` is no longer read: its settings are the [{section}] section of `{}` (see `femtoclaw-host config show`)",
                    path.display(),
                    data_dir.join(femtoclaw_config::FILE_NAME).display()
                ),
            ));
        }
    }
    let file = match given {
        Some(path) => ConfigFile::Given(path.to_owned()),
        None => ConfigFile::in_data_dir(data_dir),
    };
    Config::load(&file, std::env::vars_os(), flags).map_err(invalid)
}

/// A configuration error as a failure: bad arguments (exit 2).
pub fn invalid(e: femtoclaw_config::ConfigError) -> Failure {
    Failure::new(Code::InvalidArgs, e)
}

/// The sandbox's per-invocation resource limits under `config`.
pub fn sandbox_limits(config: &Config) -> femtoclaw_sandbox::Limits {
    femtoclaw_sandbox::Limits {
        memory_bytes: config.limits.memory_bytes,
        ..femtoclaw_sandbox::Limits::default()
    }
}

/// The sandbox's pool under `config`: room for the invocations `server.concurrency` lets run
/// at once.
pub fn pool(config: &Config) -> femtoclaw_sandbox::engine::Pool {
    femtoclaw_sandbox::engine::Pool {
        invocations: u32::try_from(config.server.concurrency).unwrap_or(u32::MAX),
    }
}

/// The caps on a capability's HTTP requests under `config`.
pub fn http_limits(config: &Config) -> HttpLimits {
    HttpLimits {
        max_request_bytes: config.http.max_request_bytes,
        max_response_bytes: config.http.max_response_bytes,
        timeout: config.http.timeout,
        max_redirects: config.http.max_redirects,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Verifies: FC-CORE-0124, FC-EXEC-0618, FC-CONF-2811
    /// The embedded defaults are the sandbox's own: a host without a configuration file behaves
    /// as the sandbox does by itself.
    #[test]
    fn the_configuration_defaults_are_the_sandbox_defaults() {
        let config = Config::default();
        assert_eq!(http_limits(&config), HttpLimits::default());
        assert_eq!(
            sandbox_limits(&config),
            femtoclaw_sandbox::Limits::default()
        );
        assert_eq!(
            config.limits.deadline,
            femtoclaw_sandbox::watchdog::DEFAULT_DEADLINE
        );
        assert_eq!(
            config.limits.max_recorded_bytes,
            femtoclaw_sandbox::MAX_RECORDED_BYTES
        );
        assert_eq!(config.ledger.origin, femtoclaw_ledger::DEFAULT_ORIGIN);
    }
}
