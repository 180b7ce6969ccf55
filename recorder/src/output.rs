//! Opening the trace file: what may be overwritten.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::Error;

/// Opens `path` for a new trace (read and write, emptied).
///
/// - A missing file is created with default permissions (0666 less umask).
/// - An existing wrec trace is overwritten: re-recording is the normal case.
/// - Without `force`, a symlink at `path` is refused (`O_NOFOLLOW`), and so is
///   an existing non-empty file that is not a wrec trace (a typo such as
///   `-o prog.wasm` must not destroy the program).
/// - Anything but a regular file (a directory, a FIFO, a device) is refused:
///   the trace is memory-mapped.
///
/// Nothing is modified before these checks pass.
pub(crate) fn open_output(path: &Path, force: bool) -> Result<File, Error> {
    let err = |msg: String| Error::Output {
        path: path.to_owned(),
        msg,
    };
    let mut oo = OpenOptions::new();
    oo.read(true).write(true).create(true).mode(0o666);
    if !force {
        oo.custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
    } else {
        oo.custom_flags(libc::O_CLOEXEC);
    }
    let mut file = match oo.open(path) {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) && !force => {
            return Err(err(
                "is a symbolic link; refusing to write through it (use --force)".into(),
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::IsADirectory => {
            return Err(err("is a directory".into()))
        }
        Err(e) => return Err(err(format!("cannot create the trace: {e}"))),
    };
    let meta = file
        .metadata()
        .map_err(|e| err(format!("cannot inspect the output file: {e}")))?;
    if !meta.is_file() {
        return Err(err(
            "is not a regular file; a trace must be a regular file".into()
        ));
    }
    if meta.len() > 0 && !force {
        let mut magic = [0u8; 8];
        let is_trace = file.read_exact(&mut magic).is_ok() && magic == wrec_format::MAGIC;
        if !is_trace {
            return Err(err(
                "exists and is not a wrec trace; refusing to overwrite it (use --force)".into(),
            ));
        }
    }
    file.set_len(0)
        .map_err(|e| err(format!("cannot truncate the output file: {e}")))?;
    Ok(file)
}
