//! SQLite's errors as hostlock's: each names the database file.

use std::io;
use std::path::Path;
use std::time::Duration;

use hostlock::Error;
use rusqlite::{ErrorCode, ffi};

/// How a store is named in [`Error::Backend`]: `sqlite /path/to/locks.db`.
pub(crate) fn store_name(path: &Path) -> String {
    format!("sqlite {}", path.display())
}

/// Maps an error of SQLite on the database at `path` to the most specific
/// variant; `waited` is the busy timeout the call waited before giving up.
pub(crate) fn from_sqlite(path: &Path, waited: Duration, e: rusqlite::Error) -> Error {
    let path = path.to_owned();
    match &e {
        rusqlite::Error::SqliteFailure(failure, _) => match failure.code {
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => Error::Busy { path, waited },
            ErrorCode::NotADatabase => Error::NotLockFile {
                path,
                found: "not a SQLite database".to_owned(),
            },
            // In WAL mode SQLite needs the -wal and -shm files beside the
            // database: a directory it may not write is the directory's
            // fault, not the file's.
            ErrorCode::ReadOnly
                if matches!(
                    failure.extended_code,
                    ffi::SQLITE_READONLY_DIRECTORY
                        | ffi::SQLITE_READONLY_CANTINIT
                        | ffi::SQLITE_READONLY_CANTLOCK
                ) =>
            {
                Error::PermissionDenied {
                    path: path.parent().map_or(path.clone(), Path::to_owned),
                }
            }
            ErrorCode::ReadOnly => Error::ReadOnly { path },
            ErrorCode::PermissionDenied | ErrorCode::AuthorizationForStatementDenied => {
                Error::PermissionDenied { path }
            }
            ErrorCode::DiskFull => Error::NoSpace { path },
            ErrorCode::DatabaseCorrupt => Error::Corrupted {
                path,
                detail: e.to_string(),
            },
            ErrorCode::CannotOpen => Error::Backend {
                store: store_name(&path),
                detail: format!(
                    "{e}; the process needs to read and write the file and to create its \
                     -wal and -shm files beside it"
                ),
                transient: false,
            },
            code => Error::Backend {
                store: store_name(&path),
                detail: e.to_string(),
                transient: matches!(
                    code,
                    ErrorCode::SystemIoFailure
                        | ErrorCode::OutOfMemory
                        | ErrorCode::OperationInterrupted
                        | ErrorCode::FileLockingProtocolFailed
                        | ErrorCode::SchemaChanged
                ),
            },
        },
        // A column of the wrong type or out of range: a row that hostlock
        // did not write, or damaged.
        rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::IntegralValueOutOfRange(..)
        | rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::Utf8Error(..) => Error::Corrupted {
            path,
            detail: format!("a hostlock table holds a value it cannot have: {e}"),
        },
        _ => Error::Backend {
            store: store_name(&path),
            detail: e.to_string(),
            transient: false,
        },
    }
}

/// Maps an I/O error on `path` to the most specific variant.
pub(crate) fn from_io(path: &Path, action: &'static str, source: io::Error) -> Error {
    let path = path.to_owned();
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
