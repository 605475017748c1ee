//! One process writes a data directory. The host holds `<data dir>/lock` (an operating-system
//! file lock) while it has the ledger open; the file says who holds it. The lock goes with the
//! process: one left by a killed server is taken over by the next process at once.

use std::fs::{File, OpenOptions};
use std::io::{Seek as _, Write as _};
use std::path::Path;

use crate::exit::{Code, Failure};

/// The lock on a data directory, held until dropped.
#[derive(Debug)]
pub struct DirLock {
    file: File,
}

impl DirLock {
    /// Takes the lock of `data_dir`, or fails at once naming the process that holds it.
    pub fn acquire(data_dir: &Path) -> Result<Self, Failure> {
        let path = data_dir.join("lock");
        let io =
            |e: std::io::Error| Failure::new(Code::Other, format!("`{}`: {e}", path.display()));
        std::fs::create_dir_all(data_dir).map_err(io)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(&path).unwrap_or_default();
                return Err(Failure::new(
                    Code::Other,
                    format!(
                        "the data directory `{}` is in use by {}",
                        data_dir.display(),
                        match holder.trim() {
                            "" => "another process".to_owned(),
                            holder => holder.to_owned(),
                        }
                    ),
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        let mut lock = Self { file };
        let command: Vec<String> = std::env::args().collect();
        lock.describe(&command.join(" "))?;
        Ok(lock)
    }

    /// Says what the holder is doing (`femtoclaw-host serve on http://…`), with its pid.
    pub fn describe(&mut self, what: &str) -> Result<(), Failure> {
        let text = format!("pid {} ({what})\n", std::process::id());
        let failed =
            |e: std::io::Error| Failure::new(Code::Other, format!("data directory lock: {e}"));
        self.file.set_len(0).map_err(failed)?;
        self.file.rewind().map_err(failed)?;
        self.file.write_all(text.as_bytes()).map_err(failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Verifies: FC-CORE-0111, FC-MEM-2415, FC-CONF-2910, FC-CONF-2911, FC-DIST-4101
    #[test]
    fn a_held_directory_is_refused_naming_its_holder_and_free_again_once_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let mut lock = DirLock::acquire(dir.path()).unwrap();
        lock.describe("serving on http://127.0.0.1:1").unwrap();
        let refused = DirLock::acquire(dir.path()).unwrap_err();
        assert!(
            refused
                .message
                .contains(&format!("pid {}", std::process::id()))
                && refused.message.contains("serving on http://127.0.0.1:1"),
            "{}",
            refused.message
        );
        drop(lock);
        DirLock::acquire(dir.path()).unwrap();
    }
}
