//! The one error type of the crate.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// `Result` with [`Error`] as its error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in hostlock.
///
/// Contention is not an error: a lock held by someone else is reported as
/// `Ok(false)` (or `Ok(None)`), never as an `Err`.
///
/// Every variant that concerns a lock file names its path, so a message can be
/// acted on without more context.
///
/// ```
/// use hostlock::{Error, FileLocker, Locker, LockValue};
///
/// let dir = tempfile::tempdir()?;
/// match FileLocker::<String>::open(dir.path()) {
///     Err(Error::IsDirectory { path }) => assert_eq!(path, dir.path()),
///     other => panic!("expected IsDirectory, got {other:?}"),
/// }
/// let locker: FileLocker<String> = FileLocker::open(dir.path().join("locks.redb"))?;
/// let err = locker.acquire("", LockValue::new(String::new())).unwrap_err();
/// assert_eq!(err.to_string(), "invalid key: a key must not be empty");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// An argument is outside what the API accepts: an empty key, a key over
    /// [`MAX_KEY_LEN`](crate::MAX_KEY_LEN) bytes, an empty token, an expiry that
    /// cannot be stored, a zero interval.
    InvalidArgument {
        /// Which argument.
        argument: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The path names a directory, not a lock file.
    IsDirectory {
        /// The path given.
        path: PathBuf,
    },
    /// The lock file, or its parent directory, does not exist.
    NotFound {
        /// The path that was missing.
        path: PathBuf,
    },
    /// The process may not read or write the lock file or its directory.
    PermissionDenied {
        /// The path that was refused.
        path: PathBuf,
    },
    /// The lock file is marked read-only; hostlock needs to write to it.
    ReadOnly {
        /// The path of the read-only file.
        path: PathBuf,
    },
    /// The locker was opened read-only
    /// ([`FileLockerBuilder::read_only`](crate::FileLockerBuilder::read_only)),
    /// and the call would change a lock.
    OpenedReadOnly {
        /// The path of the file.
        path: PathBuf,
    },
    /// The file exists but is not a hostlock lock file (another program's file,
    /// or random bytes).
    NotLockFile {
        /// The path of the file.
        path: PathBuf,
        /// What was found instead.
        found: String,
    },
    /// The file is a hostlock file but its contents are damaged.
    Corrupted {
        /// The path of the file.
        path: PathBuf,
        /// What is damaged.
        detail: String,
    },
    /// The file was written by another version of hostlock: a newer one, or
    /// an older one whose format this build no longer opens (the message then
    /// says how to replace it).
    UnsupportedVersion {
        /// The path of the file.
        path: PathBuf,
        /// The format version found in the file.
        found: u32,
        /// The newest format version this build reads.
        supported: u32,
    },
    /// A stored lock value could not be decoded as the requested type `T`:
    /// the store was written by a program using another value type.
    ValueType {
        /// The path of the file; for a store that is not a file, what names
        /// it (`redis 127.0.0.1:6379`).
        path: PathBuf,
        /// The key whose value did not decode.
        key: String,
        /// The Rust type that was requested.
        expected: &'static str,
        /// What the decoder reported.
        detail: String,
    },
    /// A lock value could not be encoded.
    Encode {
        /// What the encoder reported.
        detail: String,
    },
    /// Another process kept the lock file busy for longer than the configured
    /// busy timeout (for example a process stopped in the middle of a write).
    Busy {
        /// The path of the file.
        path: PathBuf,
        /// How long this call waited.
        waited: Duration,
    },
    /// The device holding the lock file is full, or the file reached the
    /// process's file size limit. The call that hit it changed nothing; locks
    /// granted before it are kept. Calls succeed again once there is room.
    NoSpace {
        /// The path of the file.
        path: PathBuf,
    },
    /// The lock file was deleted, replaced or truncated while this locker
    /// had it open.
    /// Other processes now open another file, so this handle refuses to go
    /// on: open the path again.
    Replaced {
        /// The path of the file.
        path: PathBuf,
    },
    /// The lock file is one that another local user could replace or
    /// rewrite: another user's file in a directory anyone may write (such as
    /// `/tmp`), a file in a world-writable directory without the sticky bit,
    /// a world-writable file, or a symlink planted in such a directory.
    /// Locks in it would be only as safe as that user is kind. Move the file,
    /// or accept the risk with
    /// [`FileLockerBuilder::trust_path`](crate::FileLockerBuilder::trust_path).
    Untrusted {
        /// The path given.
        path: PathBuf,
        /// Who could replace it, and how.
        reason: String,
    },
    /// An I/O error not covered by a more specific variant.
    Io {
        /// The path being accessed.
        path: PathBuf,
        /// What hostlock was doing.
        action: &'static str,
        /// The underlying error.
        source: io::Error,
    },
    /// A background thread could not be started.
    Thread {
        /// Which thread.
        name: &'static str,
        /// The underlying error.
        source: io::Error,
    },
    /// Code the locker runs on the caller's behalf (its [`Clock`](crate::Clock))
    /// panicked during the call. The call changed nothing; the locker goes on
    /// serving other calls.
    Panicked {
        /// What the panic said.
        detail: String,
    },
    /// The storage engine reported an error not covered by a more specific variant.
    Storage {
        /// The path of the file.
        path: PathBuf,
        /// The engine's description of the problem.
        detail: String,
    },
    /// A lock store other than hostlock's own file (a database, a server)
    /// failed: for lockers of other crates, such as those over SQLite or
    /// Redis.
    Backend {
        /// Which store, and where: `sqlite /var/lib/app/locks.db`,
        /// `redis 127.0.0.1:6379`.
        store: String,
        /// What went wrong, in the store's own words.
        detail: String,
        /// Whether the same call may succeed later without anyone acting:
        /// a busy database, a lost connection.
        transient: bool,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidArgument { argument, reason } => {
                write!(f, "invalid {argument}: {reason}")
            }
            Error::IsDirectory { path } => write!(
                f,
                "{} is a directory; give the path of a lock file inside it",
                path.display()
            ),
            Error::NotFound { path } => write!(
                f,
                "{} does not exist; create its parent directory first",
                path.display()
            ),
            Error::PermissionDenied { path } => write!(
                f,
                "permission denied on {}; the process needs read and write access",
                path.display()
            ),
            Error::ReadOnly { path } => write!(
                f,
                "{} is read-only; hostlock must write to its lock file, so make it writable",
                path.display()
            ),
            Error::OpenedReadOnly { path } => write!(
                f,
                "{} was opened read-only, so this handle cannot change its locks",
                path.display()
            ),
            Error::NotLockFile { path, found } => write!(
                f,
                "{} is not a hostlock lock file ({found}); point hostlock at a new path",
                path.display()
            ),
            Error::Corrupted { path, detail } => write!(
                f,
                "{} is damaged ({detail}); move it aside and start a new lock file",
                path.display()
            ),
            Error::UnsupportedVersion {
                path,
                found,
                supported,
            } if found < supported => write!(
                f,
                "{} has format version {found}, written by an older hostlock; this one uses \
                 version {supported}. Its locks are transient: remove the file (and any \
                 {}.hostlock folder beside it) once no process uses it, and it is created anew",
                path.display(),
                path.display()
            ),
            Error::UnsupportedVersion {
                path,
                found,
                supported,
            } => write!(
                f,
                "{} has format version {found} but this hostlock reads up to version {supported}; \
                 upgrade hostlock",
                path.display()
            ),
            Error::ValueType {
                path,
                key,
                expected,
                detail,
            } => write!(
                f,
                "the value of lock {key:?} in {} is not a {expected} ({detail}); \
                 did a program with another value type store it?",
                path.display()
            ),
            Error::Encode { detail } => write!(f, "cannot encode the lock value: {detail}"),
            Error::Busy { path, waited } => write!(
                f,
                "{} stayed busy for {waited:?}; another process holds its write lock \
                 (stopped or hung?)",
                path.display()
            ),
            Error::NoSpace { path } => write!(
                f,
                "no space left for {}: its device is full or the file reached the process's \
                 size limit; free some space, then retry (locks granted before are kept)",
                path.display()
            ),
            Error::Replaced { path } => write!(
                f,
                "{} was deleted, replaced or truncated while open, so other processes no \
                 longer share this handle's locks; open it again",
                path.display()
            ),
            Error::Untrusted { path, reason } => write!(
                f,
                "refusing the lock file {}: {reason}; use a directory only the file's users \
                 can write, or accept the risk with FileLockerBuilder::trust_path(true) \
                 (CLI: --trust-path)",
                path.display()
            ),
            Error::Io {
                path,
                action,
                source,
            } => write!(f, "cannot {action} {}: {source}", path.display()),
            Error::Thread { name, source } => {
                write!(f, "cannot start the {name} thread: {source}")
            }
            Error::Storage { path, detail } => {
                write!(f, "storage error in {}: {detail}", path.display())
            }
            Error::Backend { store, detail, .. } => write!(f, "{store}: {detail}"),
            Error::Panicked { detail } => {
                write!(
                    f,
                    "the locker's clock (or other callback) panicked: {detail}"
                )
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } | Error::Thread { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl Error {
    /// Whether the same call may succeed later without anyone fixing
    /// anything: the file was busy, the disk full, or an I/O or storage
    /// error occurred. A replaced or damaged file, a wrong value type or an
    /// invalid argument stays as it is until someone acts.
    ///
    /// ```
    /// # use hostlock::Error;
    /// let busy = Error::Busy { path: "locks.redb".into(), waited: std::time::Duration::ZERO };
    /// assert!(busy.is_transient());
    /// assert!(!Error::Replaced { path: "locks.redb".into() }.is_transient());
    /// ```
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Busy { .. }
                | Error::NoSpace { .. }
                | Error::Io { .. }
                | Error::Storage { .. }
                | Error::Thread { .. }
                | Error::Backend {
                    transient: true,
                    ..
                }
        )
    }

    /// Maps an I/O error on `path` to the most specific variant.
    pub(crate) fn io(path: impl Into<PathBuf>, action: &'static str, source: io::Error) -> Error {
        let path = path.into();
        match source.kind() {
            io::ErrorKind::NotFound => Error::NotFound { path },
            io::ErrorKind::PermissionDenied => Error::PermissionDenied { path },
            io::ErrorKind::IsADirectory => Error::IsDirectory { path },
            io::ErrorKind::ReadOnlyFilesystem => Error::ReadOnly { path },
            io::ErrorKind::StorageFull | io::ErrorKind::FileTooLarge => Error::NoSpace { path },
            _ => Error::Io {
                path,
                action,
                source,
            },
        }
    }

    /// The same error again, for each caller of a transaction that failed
    /// for all of them. An I/O error keeps its kind and message.
    pub(crate) fn duplicate(&self) -> Error {
        let io = |source: &io::Error| match source.raw_os_error() {
            Some(code) => io::Error::from_raw_os_error(code),
            None => io::Error::new(source.kind(), source.to_string()),
        };
        match self {
            Error::InvalidArgument { argument, reason } => Error::InvalidArgument {
                argument,
                reason: reason.clone(),
            },
            Error::IsDirectory { path } => Error::IsDirectory { path: path.clone() },
            Error::NotFound { path } => Error::NotFound { path: path.clone() },
            Error::PermissionDenied { path } => Error::PermissionDenied { path: path.clone() },
            Error::ReadOnly { path } => Error::ReadOnly { path: path.clone() },
            Error::OpenedReadOnly { path } => Error::OpenedReadOnly { path: path.clone() },
            Error::NotLockFile { path, found } => Error::NotLockFile {
                path: path.clone(),
                found: found.clone(),
            },
            Error::Corrupted { path, detail } => Error::Corrupted {
                path: path.clone(),
                detail: detail.clone(),
            },
            Error::UnsupportedVersion {
                path,
                found,
                supported,
            } => Error::UnsupportedVersion {
                path: path.clone(),
                found: *found,
                supported: *supported,
            },
            Error::ValueType {
                path,
                key,
                expected,
                detail,
            } => Error::ValueType {
                path: path.clone(),
                key: key.clone(),
                expected,
                detail: detail.clone(),
            },
            Error::Encode { detail } => Error::Encode {
                detail: detail.clone(),
            },
            Error::Busy { path, waited } => Error::Busy {
                path: path.clone(),
                waited: *waited,
            },
            Error::NoSpace { path } => Error::NoSpace { path: path.clone() },
            Error::Replaced { path } => Error::Replaced { path: path.clone() },
            Error::Untrusted { path, reason } => Error::Untrusted {
                path: path.clone(),
                reason: reason.clone(),
            },
            Error::Io {
                path,
                action,
                source,
            } => Error::Io {
                path: path.clone(),
                action,
                source: io(source),
            },
            Error::Thread { name, source } => Error::Thread {
                name,
                source: io(source),
            },
            Error::Storage { path, detail } => Error::Storage {
                path: path.clone(),
                detail: detail.clone(),
            },
            Error::Panicked { detail } => Error::Panicked {
                detail: detail.clone(),
            },
            Error::Backend {
                store,
                detail,
                transient,
            } => Error::Backend {
                store: store.clone(),
                detail: detail.clone(),
                transient: *transient,
            },
        }
    }

    pub(crate) fn invalid(argument: &'static str, reason: impl Into<String>) -> Error {
        Error::InvalidArgument {
            argument,
            reason: reason.into(),
        }
    }
}
