//! `wasi:filesystem`: directories the policy grants, preopened read-only or read-write, with
//! every operation passing the gate.
//!
//! The directories are wasmtime-wasi's own cap-std preopens (`Dir::open_ambient_dir` once per
//! preopen, then every path resolved beneath it: `..`, absolute paths and symbolic links cannot
//! leave it). Every function of `wasi:filesystem/types` and `wasi:filesystem/preopens` that
//! observes or changes a file is shadowed here by a gate definition that
//!
//! 1. resolves the guest-visible path the operation touches (the descriptor's path, joined with
//!    the relative path of an `*-at` call and normalized);
//! 2. asks the policy about that concrete path (`fs.read` or `fs.write` on `Scope::Path`): a
//!    denial answers `access`, never a trap, and the decision is recorded with the call; an
//!    absolute path or one that leaves the preopen then answers `not-permitted` whatever the
//!    policy said;
//! 3. performs the call with wasmtime-wasi's implementation (a call that changes a file or a
//!    directory, or creates or truncates one on open, once the invocation is written ahead of
//!    it), and records it, results included (a read records the bytes it returns).
//!
//! Streams: `read-via-stream` reads the rest of the file (at most [`MAX_READ_BYTES`]) through
//! the gate, records the bytes and answers an in-memory input stream over them, so replay
//! builds the same stream from the ledger. `write-via-stream` and `append-via-stream` answer
//! `unsupported`: a write through a stream would reach the file outside the gate. Writes use
//! `descriptor.write`. Symbolic links are never created (`symlink-at` answers `not-permitted`).
//! `filesystem-error-code` stays wasmtime-wasi's: it only inspects a stream error the guest
//! already holds. Dropping a descriptor or a directory stream closes it and is not recorded.

use std::collections::HashMap;
use std::path::PathBuf;

use femtoclaw_policy::{CallAction, Scope, path_covers};
use wasmtime::component::Resource;
use wasmtime_wasi::filesystem::{WasiFilesystemCtxView, WasiFilesystemView};
use wasmtime_wasi::p2::bindings::filesystem::preopens::Host as _;
use wasmtime_wasi::p2::bindings::sync::clocks::wall_clock::Datetime;
use wasmtime_wasi::p2::bindings::sync::filesystem::types::{
    Advice, Descriptor, DescriptorFlags, DescriptorStat, DescriptorType, DirectoryEntry,
    DirectoryEntryStream, ErrorCode, Filesize, Host as _, HostDescriptor, HostDirectoryEntryStream,
    MetadataHashValue, NewTimestamp, OpenFlags, PathFlags,
};
use wasmtime_wasi::p2::pipe::MemoryInputPipe;
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream, FsResult};

use super::HostInterface;
use crate::gate::{
    Authority, Gate, Registry, recorded_enum, recorded_flags, recorded_record, recorded_variant,
};
use crate::state::State;

const TYPES: &str = "wasi:filesystem/types@0.2.12";
const PREOPENS: &str = "wasi:filesystem/preopens@0.2.12";

/// Most bytes one read answers: `descriptor.read` returns at most this many (a shorter read, as
/// POSIX allows), and `read-via-stream` refuses a file with more left than this
/// (`file-too-large`). Every byte read is in the ledger; this bounds one entry.
pub const MAX_READ_BYTES: u64 = 1 << 20;

/// A directory the operator maps into a capability: the guest sees `host` as `guest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preopen {
    /// The guest-visible path, absolute and normalized (`/data`).
    pub guest: String,
    /// The host directory.
    pub host: PathBuf,
    /// Whether the guest may change what is below it (`fs.write` granted); read-only otherwise.
    pub writable: bool,
}

/// The guest-visible path of every descriptor the guest holds, by table index: what the
/// per-operation policy checks ask about.
#[derive(Debug, Default)]
pub(crate) struct Paths {
    by_rep: HashMap<u32, Node>,
    /// The host directory of each preopen, by guest path, opened once per invocation: where a
    /// path's symbolic links are resolved before the policy is asked about it.
    roots: HashMap<String, cap_std::fs::Dir>,
}

impl Paths {
    /// Paths below `preopens`. A directory that cannot be opened is left out, as the WASI
    /// context leaves it out: the guest never gets a descriptor below it.
    pub(crate) fn new(preopens: &[Preopen]) -> Self {
        Self {
            by_rep: HashMap::new(),
            roots: preopens
                .iter()
                .filter_map(|p| {
                    let dir =
                        cap_std::fs::Dir::open_ambient_dir(&p.host, cap_std::ambient_authority());
                    Some((p.guest.clone(), dir.ok()?))
                })
                .collect(),
        }
    }

    /// The guest path `node` really names when symbolic links inside its preopen lead
    /// elsewhere in it; `None` when it names itself, or neither it nor its parent exists (the
    /// call then fails on its own). Links leading out of the preopen are refused by cap-std
    /// when the call is performed. A preopen the host could not open, or a target that is not
    /// a path the policy can be asked about, is refused: never an unchecked path.
    fn resolved(&self, node: &Node) -> Result<Option<String>, ErrorCode> {
        let dir = self.roots.get(&node.root).ok_or(ErrorCode::NotPermitted)?;
        // Resolved as the open will walk it: link by link, `..` from where a link led.
        let relative = node.walked.trim_start_matches('/');
        if relative.is_empty() {
            return Ok(None);
        }
        // A path that does not exist yet (a file being created) resolves through its parent;
        // a dangling link there would be followed to a target the policy was not asked
        // about, so it is refused.
        let real = match dir.canonicalize(relative) {
            Ok(real) => real,
            Err(_) => {
                let (parent, name) = relative.rsplit_once('/').unwrap_or((".", relative));
                if dir
                    .symlink_metadata(relative)
                    .is_ok_and(|m| m.file_type().is_symlink())
                {
                    return Err(ErrorCode::NotPermitted);
                }
                match dir.canonicalize(parent) {
                    Ok(parent) => parent.join(name),
                    Err(_) => return Ok(None),
                }
            }
        };
        let real = real.to_str().ok_or(ErrorCode::IllegalByteSequence)?;
        match Scope::path(&format!("{}/{real}", node.root)) {
            Ok(Scope::Path(real)) if real == node.path => Ok(None),
            Ok(Scope::Path(real)) => Ok(Some(real)),
            _ => Err(ErrorCode::NotPermitted),
        }
    }
}

/// Where a descriptor is: its preopen's guest path, its own (lexically normalized: what the
/// policy is asked about first), and the path below the preopen as the guest wrote it, which
/// is what the operating system walks (a `..` after a symbolic link climbs from the link's
/// target, not from the link).
#[derive(Debug, Clone)]
struct Node {
    root: String,
    path: String,
    walked: String,
}

impl Node {
    /// The node `relative` names from this one, and whether it is inside the preopen. An
    /// absolute path names itself and is never inside (`*-at` paths are relative); one that
    /// climbs above `/` or holds a NUL names nothing: `not-permitted`.
    fn join(&self, relative: &str) -> Result<(Node, bool), ErrorCode> {
        let absolute = relative.starts_with('/');
        let joined = if absolute {
            relative.to_owned()
        } else {
            format!("{}/{relative}", self.path)
        };
        let Ok(Scope::Path(path)) = Scope::path(&joined) else {
            return Err(ErrorCode::NotPermitted);
        };
        let inside = !absolute && path_covers(&self.root, &path);
        let walked = if self.walked.is_empty() {
            relative.to_owned()
        } else {
            format!("{}/{relative}", self.walked)
        };
        let node = Node {
            root: self.root.clone(),
            path,
            walked,
        };
        Ok((node, inside))
    }
}

/// What an operation needs on the path it touches.
#[derive(Debug, Clone, Copy)]
enum Access {
    Read,
    Write,
    ReadWrite,
}

impl Access {
    fn actions(self) -> &'static [CallAction] {
        match self {
            Access::Read => &[CallAction::FsRead],
            Access::Write => &[CallAction::FsWrite],
            Access::ReadWrite => &[CallAction::FsRead, CallAction::FsWrite],
        }
    }

    /// What `open-at` with these flags needs: read alone, or read and write once it may change
    /// the file (write, create, truncate, mutate-directory), so that a file under a read rule
    /// cannot be truncated or overwritten by one who may not read it.
    fn of_open(open: OpenFlags, flags: DescriptorFlags) -> Self {
        let writes = flags.contains(DescriptorFlags::WRITE)
            || flags.contains(DescriptorFlags::MUTATE_DIRECTORY)
            || open.contains(OpenFlags::CREATE)
            || open.contains(OpenFlags::TRUNCATE);
        if writes {
            Access::ReadWrite
        } else {
            Access::Read
        }
    }
}

/// The node of descriptor `fd`, then of `relative` below it when given, checked against the
/// policy for `access`. A path outside the preopen (by `..` or an absolute path) is asked about
/// too, so that its decision is recorded, and then refused whatever the answer.
fn authorize(
    state: &State,
    authority: &mut Authority<'_>,
    fd: &Resource<Descriptor>,
    relative: Option<&str>,
    access: Access,
) -> Result<Node, ErrorCode> {
    let node = state
        .host
        .preopens
        .by_rep
        .get(&fd.rep())
        .ok_or(ErrorCode::BadDescriptor)?;
    let (node, inside) = match relative {
        Some(relative) => node.join(relative)?,
        None => (node.clone(), true),
    };
    decide(authority, access, &node.path)?;
    if !inside {
        return Err(ErrorCode::NotPermitted);
    }
    // A symbolic link inside the preopen may lead to another path in it: that path must be
    // granted too, or a link would reach what the policy withholds.
    if let Some(real) = state.host.preopens.resolved(&node)? {
        decide(authority, access, &real)?;
    }
    Ok(node)
}

/// Asks the policy for every action of `access` on `path`, each decision recorded even after a
/// denial, so that the ledger shows all the operation needed; `access` when any is denied.
fn decide(authority: &mut Authority<'_>, access: Access, path: &str) -> Result<(), ErrorCode> {
    let mut denied = false;
    for &action in access.actions() {
        denied |= authority
            .check(action, &Scope::Path(path.to_owned()))
            .is_err();
    }
    if denied {
        Err(ErrorCode::Access)
    } else {
        Ok(())
    }
}

/// wasmtime-wasi's answer as the WIT result: its error codes are the guest's; anything else
/// is a host fault.
fn lower<T>(
    view: &mut WasiFilesystemCtxView<'_>,
    result: FsResult<T>,
) -> wasmtime::Result<Result<T, ErrorCode>> {
    match result {
        Ok(v) => Ok(Ok(v)),
        Err(e) => Ok(Err(view.convert_error_code(e)?)),
    }
}

/// A second borrow of a handle the guest lent to this call.
fn lend<T: 'static>(handle: &Resource<T>) -> Resource<T> {
    Resource::new_borrow(handle.rep())
}

/// Authorizes `access` on descriptor `fd` (and `relative` below it), then performs `call`:
/// the shape of every descriptor method. A call that writes changes the world: it is written
/// ahead first.
fn answer<T>(
    state: &mut State,
    authority: &mut Authority<'_>,
    fd: &Resource<Descriptor>,
    relative: Option<&str>,
    access: Access,
    call: impl FnOnce(&mut WasiFilesystemCtxView<'_>, Resource<Descriptor>) -> FsResult<T>,
) -> wasmtime::Result<(Result<T, ErrorCode>,)> {
    if let Err(code) = authorize(state, authority, fd, relative, access) {
        return Ok((Err(code),));
    }
    if !matches!(access, Access::Read) && authority.before_effect().is_err() {
        return Ok((Err(ErrorCode::Io),));
    }
    let mut view = state.filesystem();
    let result = call(&mut view, lend(fd));
    Ok((lower(&mut view, result)?,))
}

/// Reads what is left of `fd` from `offset`: the bytes, or `file-too-large` past
/// [`MAX_READ_BYTES`].
fn read_rest(
    view: &mut WasiFilesystemCtxView<'_>,
    fd: &Resource<Descriptor>,
    offset: Filesize,
) -> wasmtime::Result<Result<Vec<u8>, ErrorCode>> {
    let mut bytes = Vec::new();
    loop {
        let got = bytes.len() as u64;
        let want = MAX_READ_BYTES + 1 - got;
        let chunk = HostDescriptor::read(view, lend(fd), want, offset.saturating_add(got));
        match lower(view, chunk)? {
            Err(code) => return Ok(Err(code)),
            Ok((chunk, end)) => {
                let empty = chunk.is_empty();
                bytes.extend_from_slice(&chunk);
                if bytes.len() as u64 > MAX_READ_BYTES {
                    return Ok(Err(ErrorCode::FileTooLarge));
                }
                if end || empty {
                    return Ok(Ok(bytes));
                }
            }
        }
    }
}

/// The interface: the granted directories, preopened in the WASI context, and the
/// guest-visible path of every descriptor, which each operation's policy check asks about.
pub(crate) struct Filesystem;

impl HostInterface for Filesystem {
    type Context = Vec<Preopen>;
    type State = Paths;

    fn configure(preopens: &Vec<Preopen>, wasi: &mut wasmtime_wasi::WasiCtxBuilder) {
        for p in preopens {
            let perms = if p.writable {
                wasmtime_wasi::FsPerms::ReadWrite
            } else {
                wasmtime_wasi::FsPerms::ReadOnly
            };
            // The host checked the directory before the invocation; one that vanished since is
            // not preopened, and the guest finds no such path.
            if let Err(e) = wasi.preopened_dir(&p.host, &p.guest, perms) {
                tracing::warn!(host = %p.host.display(), guest = %p.guest, "not preopened: {e:#}");
            }
        }
    }

    fn state(preopens: Vec<Preopen>) -> Paths {
        Paths::new(&preopens)
    }

    fn add_to_linker(registry: &mut Registry) -> wasmtime::Result<()> {
        add_to_linker(registry)
    }
}

fn add_to_linker(registry: &mut Registry) -> wasmtime::Result<()> {
    Gate::resource::<Descriptor>(registry, TYPES, "descriptor")?;
    Gate::resource::<DirectoryEntryStream>(registry, TYPES, "directory-entry-stream")?;

    Gate::define(registry, PREOPENS, "get-directories", |state, (): &()| {
        let dirs = state.filesystem().get_directories()?;
        for (dir, guest) in &dirs {
            if let Ok(Scope::Path(path)) = Scope::path(guest) {
                let node = Node {
                    root: path.clone(),
                    path,
                    walked: String::new(),
                };
                state.host.preopens.by_rep.insert(dir.rep(), node);
            }
        }
        Ok((dirs,))
    })?;

    add_reads(registry)?;
    add_streams(registry)?;
    add_writes(registry)?;
    registry.deterministic_func(
        TYPES,
        "filesystem-error-code",
        |mut store, (err,): (Resource<wasmtime_wasi::p2::bindings::sync::io::error::Error>,)| {
            Ok((store.data_mut().filesystem().filesystem_error_code(err)?,))
        },
    )
}

type Fd = Resource<Descriptor>;

/// Functions that observe: `fs.read` on the path they touch.
fn add_reads(registry: &mut Registry) -> wasmtime::Result<()> {
    Gate::define_scoped(
        registry,
        TYPES,
        "[method]descriptor.open-at",
        |state,
         authority,
         (fd, path_flags, path, open, flags): &(
            Fd,
            PathFlags,
            String,
            OpenFlags,
            DescriptorFlags,
        )| {
            let access = Access::of_open(*open, *flags);
            let node = match authorize(state, authority, fd, Some(path), access) {
                Ok(node) => node,
                Err(code) => return Ok((Err(code),)),
            };
            // Creating or truncating a file changes the world; opening one does not.
            if open.intersects(OpenFlags::CREATE | OpenFlags::TRUNCATE)
                && authority.before_effect().is_err()
            {
                return Ok((Err(ErrorCode::Io),));
            }
            let mut view = state.filesystem();
            let opened = HostDescriptor::open_at(
                &mut view,
                lend(fd),
                *path_flags,
                path.clone(),
                *open,
                *flags,
            );
            let opened = lower(&mut view, opened)?;
            if let Ok(new) = &opened {
                state.host.preopens.by_rep.insert(new.rep(), node);
            }
            Ok((opened,))
        },
    )?;
    Gate::define_scoped(
        registry,
        TYPES,
        "[method]descriptor.read",
        |state, authority, (fd, len, offset): &(Fd, Filesize, Filesize)| {
            let len = (*len).min(MAX_READ_BYTES);
            answer(state, authority, fd, None, Access::Read, |v, fd| {
                HostDescriptor::read(v, fd, len, *offset)
            })
        },
    )?;
    Gate::define_scoped(
        registry,
        TYPES,
        "[method]descriptor.read-directory",
        |state, authority, (fd,): &(Fd,)| {
            answer(state, authority, fd, None, Access::Read, |v, fd| {
                HostDescriptor::read_directory(v, fd)
            })
        },
    )?;
    Gate::define(
        registry,
        TYPES,
        "[method]directory-entry-stream.read-directory-entry",
        |state, (stream,): &(Resource<DirectoryEntryStream>,)| {
            let mut view = state.filesystem();
            let entry = HostDirectoryEntryStream::read_directory_entry(&mut view, lend(stream));
            Ok((lower(&mut view, entry)?,))
        },
    )?;
    Gate::define_scoped(
        registry,
        TYPES,
        "[method]descriptor.stat",
        |state, authority, (fd,): &(Fd,)| {
            answer(state, authority, fd, None, Access::Read, |v, fd| {
                HostDescriptor::stat(v, fd)
            })
        },
    )?;
    Gate::define_scoped(
        registry,
        TYPES,
        "[method]descriptor.stat-at",
        |state, authority, (fd, flags, path): &(Fd, PathFlags, String)| {
            answer(state, authority, fd, Some(path), Access::Read, |v, fd| {
                HostDescriptor::stat_at(v, fd, *flags, path.clone())
            })
        },
    )?;
    Gate::define_scoped(
        registry,
        TYPES,
        "[method]descriptor.get-type",
        |state, authority, (fd,): &(Fd,)| {
            answer(state, authority, fd, None, Access::Read, |v, fd| {
                HostDescriptor::get_type(v, fd)
            })
        },
    )?;
    Gate::define_scoped(
        registry,
        TYPES,
        "[method]descriptor.get-flags",
        |state, authority, (fd,): &(Fd,)| {
            answer(state, authority, fd, None, Access::Read, |v, fd| {
                HostDescriptor::get_flags(v, fd)
            })
        },
    )?;
    Gate::define_scoped(
        registry,
        TYPES,
        "[method]descriptor.metadata-hash",
        |state, authority, (fd,): &(Fd,)| {
            answer(state, authority, fd, None, Access::Read, |v, fd| {
                HostDescriptor::metadata_hash(v, fd)
            })
        },
    )?;
    Gate::define_scoped(
        registry,
        TYPES,
        "[method]descriptor.metadata-hash-at",
        |state, authority, (fd, flags, path): &(Fd, PathFlags, String)| {
            answer(state, authority, fd, Some(path), Access::Read, |v, fd| {
                HostDescriptor::metadata_hash_at(v, fd, *flags, path.clone())
            })
        },
    )?;
    Gate::define_scoped(
        registry,
        TYPES,
        "[method]descriptor.readlink-at",
        |state, authority, (fd, path): &(Fd, String)| {
            answer(state, authority, fd, Some(path), Access::Read, |v, fd| {
                HostDescriptor::readlink_at(v, fd, path.clone())
            })
        },
    )?;
    Gate::define_scoped(
        registry,
        TYPES,
        "[method]descriptor.advise",
        |state, authority, (fd, offset, len, advice): &(Fd, Filesize, Filesize, Advice)| {
            answer(state, authority, fd, None, Access::Read, |v, fd| {
                HostDescriptor::advise(v, fd, *offset, *len, *advice)
            })
        },
    )?;
    Gate::define(
        registry,
        TYPES,
        "[method]descriptor.is-same-object",
        |state, (a, b): &(Fd, Fd)| {
            let same = HostDescriptor::is_same_object(&mut state.filesystem(), lend(a), lend(b))?;
            Ok((same,))
        },
    )
}

/// The stream constructors: reads answered from recorded bytes, writes refused.
fn add_streams(registry: &mut Registry) -> wasmtime::Result<()> {
    const READ_VIA_STREAM: &str = "[method]descriptor.read-via-stream";
    Gate::wrap(
        registry,
        TYPES,
        READ_VIA_STREAM,
        |mut store, (fd, offset): (Fd, Filesize)| {
            let (read,): (Result<Vec<u8>, ErrorCode>,) = Gate::pass(
                &mut store,
                TYPES,
                READ_VIA_STREAM,
                &(lend(&fd), offset),
                |state, authority| {
                    if let Err(code) = authorize(state, authority, &fd, None, Access::Read) {
                        return Ok((Err(code),));
                    }
                    Ok((read_rest(&mut state.filesystem(), &fd, offset)?,))
                },
            )?;
            let stream = match read {
                Ok(bytes) => {
                    let stream: DynInputStream = Box::new(MemoryInputPipe::new(bytes));
                    Ok(store.data_mut().table.push(stream)?)
                }
                Err(code) => Err(code),
            };
            Ok((stream,))
        },
    )?;
    Gate::define(
        registry,
        TYPES,
        "[method]descriptor.write-via-stream",
        |_, _: &(Fd, Filesize)| Ok((Err::<Resource<DynOutputStream>, _>(ErrorCode::Unsupported),)),
    )?;
    Gate::define(
        registry,
        TYPES,
        "[method]descriptor.append-via-stream",
        |_, _: &(Fd,)| Ok((Err::<Resource<DynOutputStream>, _>(ErrorCode::Unsupported),)),
    )
}

/// Functions that change: `fs.write` on every path they touch.
fn add_writes(registry: &mut Registry) -> wasmtime::Result<()> {
    Gate::define_scoped(
        registry,
        TYPES,
        "[method]descriptor.write",
        |state, authority, (fd, bytes, offset): &(Fd, Vec<u8>, Filesize)| {
            answer(state, authority, fd, None, Access::Write, |v, fd| {
                HostDescriptor::write(v, fd, bytes.clone(), *offset)
            })
        },
    )?;
    Gate::define_scoped(
        registry,
        TYPES,
        "[method]descriptor.set-size",
        |state, authority, (fd, size): &(Fd, Filesize)| {
            answer(state, authority, fd, None, Access::Write, |v, fd| {
                HostDescriptor::set_size(v, fd, *size)
            })
        },
    )?;
    Gate::define_scoped(
        registry,
        TYPES,
        "[method]descriptor.set-times",
        |state, authority, (fd, atime, mtime): &(Fd, NewTimestamp, NewTimestamp)| {
            answer(state, authority, fd, None, Access::Write, |v, fd| {
                HostDescriptor::set_times(v, fd, *atime, *mtime)
            })
        },
    )?;
    for (function, perform) in [
        (
            "[method]descriptor.sync",
            (|v, fd| HostDescriptor::sync(v, fd)) as SyncFn,
        ),
        ("[method]descriptor.sync-data", |v, fd| {
            HostDescriptor::sync_data(v, fd)
        }),
    ] {
        Gate::define_scoped(
            registry,
            TYPES,
            function,
            move |state, authority, (fd,): &(Fd,)| {
                answer(state, authority, fd, None, Access::Write, perform)
            },
        )?;
    }
    Gate::define_scoped(
        registry,
        TYPES,
        "[method]descriptor.set-times-at",
        |state, authority, (fd, flags, path, atime, mtime): &(Fd, PathFlags, String, NewTimestamp, NewTimestamp)| {
            answer(state, authority, fd, Some(path), Access::Write, |v, fd| {
                HostDescriptor::set_times_at(v, fd, *flags, path.clone(), *atime, *mtime)
            })
        },
    )?;
    for (function, perform) in [
        (
            "[method]descriptor.create-directory-at",
            (|v, fd, p| HostDescriptor::create_directory_at(v, fd, p)) as AtFn,
        ),
        ("[method]descriptor.remove-directory-at", |v, fd, p| {
            HostDescriptor::remove_directory_at(v, fd, p)
        }),
        ("[method]descriptor.unlink-file-at", |v, fd, p| {
            HostDescriptor::unlink_file_at(v, fd, p)
        }),
    ] {
        Gate::define_scoped(
            registry,
            TYPES,
            function,
            move |state, authority, (fd, path): &(Fd, String)| {
                answer(state, authority, fd, Some(path), Access::Write, |v, fd| {
                    perform(v, fd, path.clone())
                })
            },
        )?;
    }
    Gate::define_scoped(
        registry,
        TYPES,
        "[method]descriptor.rename-at",
        |state, authority, (fd, old, new_fd, new): &(Fd, String, Fd, String)| {
            if let Err(code) = authorize(state, authority, new_fd, Some(new), Access::Write) {
                return Ok((Err(code),));
            }
            // Moving a file out from under a read rule is reading it: the source needs both.
            answer(
                state,
                authority,
                fd,
                Some(old),
                Access::ReadWrite,
                |v, fd| HostDescriptor::rename_at(v, fd, old.clone(), lend(new_fd), new.clone()),
            )
        },
    )?;
    Gate::define_scoped(
        registry,
        TYPES,
        "[method]descriptor.link-at",
        |state, authority, (fd, flags, old, new_fd, new): &(Fd, PathFlags, String, Fd, String)| {
            if let Err(code) = authorize(state, authority, new_fd, Some(new), Access::Write) {
                return Ok((Err(code),));
            }
            answer(
                state,
                authority,
                fd,
                Some(old),
                Access::ReadWrite,
                |v, fd| {
                    HostDescriptor::link_at(v, fd, *flags, old.clone(), lend(new_fd), new.clone())
                },
            )
        },
    )?;
    Gate::define(
        registry,
        TYPES,
        "[method]descriptor.symlink-at",
        |_, _: &(Fd, String, String)| Ok((Err::<(), _>(ErrorCode::NotPermitted),)),
    )
}

type SyncFn = fn(&mut WasiFilesystemCtxView<'_>, Fd) -> FsResult<()>;
type AtFn = fn(&mut WasiFilesystemCtxView<'_>, Fd, String) -> FsResult<()>;

// ---- how the filesystem's types are recorded --------------------------------------------------

recorded_enum!(ErrorCode {
    Access => "access",
    WouldBlock => "would-block",
    Already => "already",
    BadDescriptor => "bad-descriptor",
    Busy => "busy",
    Deadlock => "deadlock",
    Quota => "quota",
    Exist => "exist",
    FileTooLarge => "file-too-large",
    IllegalByteSequence => "illegal-byte-sequence",
    InProgress => "in-progress",
    Interrupted => "interrupted",
    Invalid => "invalid",
    Io => "io",
    IsDirectory => "is-directory",
    Loop => "loop",
    TooManyLinks => "too-many-links",
    MessageSize => "message-size",
    NameTooLong => "name-too-long",
    NoDevice => "no-device",
    NoEntry => "no-entry",
    NoLock => "no-lock",
    InsufficientMemory => "insufficient-memory",
    InsufficientSpace => "insufficient-space",
    NotDirectory => "not-directory",
    NotEmpty => "not-empty",
    NotRecoverable => "not-recoverable",
    Unsupported => "unsupported",
    NoTty => "no-tty",
    NoSuchDevice => "no-such-device",
    Overflow => "overflow",
    NotPermitted => "not-permitted",
    Pipe => "pipe",
    ReadOnly => "read-only",
    InvalidSeek => "invalid-seek",
    TextFileBusy => "text-file-busy",
    CrossDevice => "cross-device",
});

recorded_enum!(DescriptorType {
    Unknown => "unknown",
    BlockDevice => "block-device",
    CharacterDevice => "character-device",
    Directory => "directory",
    Fifo => "fifo",
    SymbolicLink => "symbolic-link",
    RegularFile => "regular-file",
    Socket => "socket",
});

recorded_enum!(Advice {
    Normal => "normal",
    Sequential => "sequential",
    Random => "random",
    WillNeed => "will-need",
    DontNeed => "dont-need",
    NoReuse => "no-reuse",
});

recorded_flags!(DescriptorFlags {
    READ => "read",
    WRITE => "write",
    FILE_INTEGRITY_SYNC => "file-integrity-sync",
    DATA_INTEGRITY_SYNC => "data-integrity-sync",
    REQUESTED_WRITE_SYNC => "requested-write-sync",
    MUTATE_DIRECTORY => "mutate-directory",
});

recorded_flags!(PathFlags {
    SYMLINK_FOLLOW => "symlink-follow",
});

recorded_flags!(OpenFlags {
    CREATE => "create",
    DIRECTORY => "directory",
    EXCLUSIVE => "exclusive",
    TRUNCATE => "truncate",
});

recorded_record!(DescriptorStat {
    type_: "type",
    link_count: "link-count",
    size: "size",
    data_access_timestamp: "data-access-timestamp",
    data_modification_timestamp: "data-modification-timestamp",
    status_change_timestamp: "status-change-timestamp",
});

recorded_record!(DirectoryEntry {
    type_: "type",
    name: "name",
});

recorded_record!(MetadataHashValue {
    lower: "lower",
    upper: "upper",
});

recorded_variant!(NewTimestamp {
    NoChange => "no-change",
    Now => "now",
    Timestamp(Datetime) => "timestamp",
});
