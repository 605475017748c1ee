//! Test guest: ordinary Rust `std::fs` calls, one function each (named `fs-*`: an export named
//! like a libc function, `read` say, would take that function's place in the guest), on whatever directories the
//! host preopens. Errors are returned as text, never a trap.

femtoclaw_sdk::generate!({
    inline: r#"
        package femtoclaw:std-files@0.1.0;

        world std-files {
            include femtoclaw:host/capability@0.1.0;

            /// `std::fs::read_to_string`.
            export fs-read: func(path: string) -> result<string, string>;
            /// `std::fs::write`.
            export fs-write: func(path: string, text: string) -> result<_, string>;
            /// `std::fs::read_dir`: the names, sorted.
            export fs-list: func(dir: string) -> result<list<string>, string>;
            /// `std::fs::metadata`: the length.
            export fs-size: func(path: string) -> result<u64, string>;
            /// `std::fs::create_dir`.
            export fs-mkdir: func(path: string) -> result<_, string>;
            /// `std::fs::rename`.
            export fs-rename: func(source: string, target: string) -> result<_, string>;
            /// `std::fs::remove_file`.
            export fs-remove: func(path: string) -> result<_, string>;
        }
    "#,
    path: "../../../wit",
});

struct StdFiles;

fn text(e: std::io::Error) -> String {
    e.to_string()
}

impl Guest for StdFiles {
    fn fs_read(path: String) -> Result<String, String> {
        std::fs::read_to_string(path).map_err(text)
    }

    fn fs_write(path: String, text: String) -> Result<(), String> {
        std::fs::write(path, text).map_err(self::text)
    }

    fn fs_list(dir: String) -> Result<Vec<String>, String> {
        let mut names = std::fs::read_dir(dir)
            .map_err(text)?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(text)?;
        names.sort();
        Ok(names)
    }

    fn fs_size(path: String) -> Result<u64, String> {
        std::fs::metadata(path).map(|m| m.len()).map_err(text)
    }

    fn fs_mkdir(path: String) -> Result<(), String> {
        std::fs::create_dir(path).map_err(text)
    }

    fn fs_rename(source: String, target: String) -> Result<(), String> {
        std::fs::rename(source, target).map_err(text)
    }

    fn fs_remove(path: String) -> Result<(), String> {
        std::fs::remove_file(path).map_err(text)
    }
}

export!(StdFiles);
