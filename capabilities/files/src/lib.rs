//! The `files` capability: read, write and list files below `/data`.
//!
//! Its functions are `read-file`, `write-file` and `list-dir`: an export named like a libc
//! function (`read`, `write`) would take that function's place inside the guest.
//!
//! The manifest requests `/data` for reading and writing; the operator's policy decides what is
//! granted (nothing, by default) and `<data dir>/mounts.toml` which host directory it is. Every
//! operation is checked against the policy with its concrete path and recorded, the bytes read
//! included; a refused path is an `err` naming it, never a trap.

femtoclaw_sdk::generate!({
    inline: r#"
        package femtoclaw:files@0.1.0;

        interface types {
            /// One entry of a directory.
            record entry {
                /// Its name.
                name: string,
                /// `file`, `directory`, `symbolic-link` or `other`.
                kind: string,
            }
        }

        world files {
            include femtoclaw:host/capability@0.1.0;
            use types.{entry};

            /// The content of the text file at `path`.
            export read-file: func(path: string) -> result<string, string>;
            /// Replaces the content of the file at `path` (created when missing) with `text`;
            /// returns the number of bytes written.
            export write-file: func(path: string, text: string) -> result<u64, string>;
            /// The entries of the directory at `dir`, sorted by name.
            export list-dir: func(dir: string) -> result<list<entry>, string>;
        }
    "#,
    path: "../../wit",
});

use femtoclaw_sdk::files;

struct Files;

impl Guest for Files {
    fn read_file(path: String) -> Result<String, String> {
        files::read_to_string(&path).map_err(|e| e.to_string())
    }

    fn write_file(path: String, text: String) -> Result<u64, String> {
        files::write(&path, text.as_bytes()).map_err(|e| e.to_string())?;
        Ok(text.len() as u64)
    }

    fn list_dir(dir: String) -> Result<Vec<Entry>, String> {
        let entries = files::list(&dir).map_err(|e| e.to_string())?;
        Ok(entries
            .into_iter()
            .map(|e| Entry {
                name: e.name,
                kind: e.kind.to_owned(),
            })
            .collect())
    }
}

export!(Files);
