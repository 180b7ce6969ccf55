//! Opening the trace file: what may be overwritten, and when.

use std::fs::{File, OpenOptions, Permissions};
use std::io::{self, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::Error;

/// A new trace, written beside its target under a temporary name until
/// [`Pending::put_in_place`] renames it over the target: until then the
/// target is as it was (an older trace at that path survives a start that
/// fails, for lack of space say), and if the recording never starts the
/// temporary file is removed when this is dropped.
pub(crate) struct Pending {
    tmp: tempfile::TempPath,
    /// Where it goes: the output path, or with `force` what a symbolic link
    /// there points to.
    target: PathBuf,
}

impl Pending {
    /// Renames the temporary file over the target.
    pub(crate) fn put_in_place(self, path: &Path) -> Result<(), Error> {
        let target = self.target;
        self.tmp.persist(&target).map_err(|e| Error::Output {
            path: path.to_owned(),
            msg: format!("cannot move the new trace into place: {}", e.error),
        })
    }
}

/// Checks `path` as the place for a new trace and creates the file the
/// trace is written to, beside it, open for reading and writing and empty
/// (see [`Pending`]). Nothing at `path` is modified.
///
/// - A missing file is created with default permissions (0666 less umask).
/// - An existing wrec trace is replaced: re-recording is the normal case.
/// - Without `force`, a symlink at `path` is refused, and so is an existing
///   non-empty file that is not a wrec trace (a typo such as `-o prog.wasm`
///   must not destroy the program). With `force`, the file a symlink points
///   to is replaced.
/// - Anything but a regular file (a directory, a FIFO, a device) is refused:
///   the trace is memory-mapped.
pub(crate) fn open_output(path: &Path, force: bool) -> Result<(File, Pending), Error> {
    let err = |msg: String| Error::Output {
        path: path.to_owned(),
        msg,
    };
    let mut target = path.to_owned();
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(format!("cannot inspect the output path: {e}"))),
        Ok(meta) => {
            if meta.file_type().is_symlink() {
                if !force {
                    return Err(err(
                        "is a symbolic link; refusing to write through it (use --force)".into(),
                    ));
                }
                target = resolve_link(path);
            }
            match std::fs::metadata(&target) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(err(format!("cannot inspect the output path: {e}"))),
                Ok(m) if m.is_dir() => return Err(err("is a directory".into())),
                Ok(m) if !m.is_file() => {
                    return Err(err(
                        "is not a regular file; a trace must be a regular file".into()
                    ))
                }
                Ok(m) if m.len() > 0 && !force && !is_trace(&target) => {
                    return Err(err(
                        "exists and is not a wrec trace; refusing to overwrite it (use --force)"
                            .into(),
                    ))
                }
                Ok(_) => {}
            }
        }
    }
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut prefix = std::ffi::OsString::from(".");
    prefix.push(target.file_name().unwrap_or_default());
    prefix.push(".");
    let tmp = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(".tmp")
        .permissions(Permissions::from_mode(0o666))
        .tempfile_in(dir)
        .map_err(|e| err(format!("cannot create the trace: {e}")))?;
    let (file, tmp) = tmp.into_parts();
    Ok((file, Pending { tmp, target }))
}

/// What the symbolic link at `path` points to, made absolute; the link's own
/// target if that does not exist yet.
fn resolve_link(path: &Path) -> PathBuf {
    if let Ok(p) = std::fs::canonicalize(path) {
        return p;
    }
    match std::fs::read_link(path) {
        Ok(t) if t.is_absolute() => t,
        Ok(t) => path.parent().unwrap_or(Path::new(".")).join(t),
        Err(_) => path.to_owned(),
    }
}

/// Whether the regular file at `path` starts with the wrec magic.
fn is_trace(path: &Path) -> bool {
    let mut magic = [0u8; 8];
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && magic == wrec_format::MAGIC
}
