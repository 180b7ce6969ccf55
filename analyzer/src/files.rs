//! Opening the files an input names: the trace given on the command line,
//! the wasm file a trace recorded, `--module` files, source files DWARF
//! names, a profile `view` is given.
//!
//! Any of these paths may name something other than the file it once was:
//! a character device (`/dev/zero` reads forever), a FIFO (an open blocks
//! until a writer comes), a directory, or a file far larger than any wasm
//! module (a file replaced since the recording, or a hostile trace). So
//! every such file is opened with `O_NONBLOCK` (a FIFO cannot block the
//! open), must be a regular file by the opened descriptor's metadata (not
//! the path's: it cannot have been swapped in between), and is read up to
//! a limit, at most that limit plus one byte whatever its size claims.
//!
//! Errors are [`io::Error`]s whose text says what the file is (`a FIFO
//! (named pipe), not a regular file`, `larger than 1 GiB (…)`): callers put
//! the path in front. A file that is not regular has kind
//! [`io::ErrorKind::InvalidInput`] ([`io::ErrorKind::IsADirectory`] for a
//! directory), one over the limit [`io::ErrorKind::FileTooLarge`].

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// The largest wasm file read (binary; a text module has its own,
/// smaller limit, [`MAX_TEXT_MODULE_BYTES`]). The trace does not record
/// module sizes; the largest real modules are a few hundred MiB.
pub const MAX_MODULE_BYTES: u64 = 1 << 30;
/// The largest text (`.wat`) module read: compiling text takes several
/// times its size in memory.
pub const MAX_TEXT_MODULE_BYTES: u64 = 128 << 20;
/// The largest profile JSON (`wanalyze view profile.json`) read, and the
/// most a gzipped one may unpack to.
pub const MAX_PROFILE_BYTES: u64 = 1 << 30;

/// Opens `path` for reading if it is a regular file; returns the file and
/// its size.
pub fn open_regular(path: &Path) -> io::Result<(File, u64)> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    let t = meta.file_type();
    if t.is_file() {
        return Ok((file, meta.len()));
    }
    let (kind, what) = if t.is_dir() {
        (io::ErrorKind::IsADirectory, "a directory")
    } else if t.is_fifo() {
        (io::ErrorKind::InvalidInput, "a FIFO (named pipe)")
    } else if t.is_char_device() {
        (io::ErrorKind::InvalidInput, "a character device")
    } else if t.is_block_device() {
        (io::ErrorKind::InvalidInput, "a block device")
    } else if t.is_socket() {
        (io::ErrorKind::InvalidInput, "a socket")
    } else {
        (io::ErrorKind::InvalidInput, "something")
    };
    Err(io::Error::new(kind, format!("{what}, not a regular file")))
}

/// Reads the regular file at `path` if it holds at most `max` bytes.
pub fn read_bounded(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    let (file, len) = open_regular(path)?;
    if len > max {
        return Err(too_large(len, max));
    }
    // The size may have changed since (or lie: /proc): read one byte more
    // than allowed, to know.
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(too_large(bytes.len() as u64, max));
    }
    Ok(bytes)
}

fn too_large(len: u64, max: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::FileTooLarge,
        format!("larger than {} ({len} bytes or more)", size(max)),
    )
}

/// `1 GiB`, `128 MiB`, `8 KiB`, `100 bytes`.
pub fn size(n: u64) -> String {
    match n {
        n if n >= 1 << 30 && n % (1 << 30) == 0 => format!("{} GiB", n >> 30),
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{} KiB", n >> 10),
        n => format!("{n} bytes"),
    }
}

/// Entries of one directory looked at by [`lossy_matches`].
const MAX_DIR_ENTRIES: usize = 10_000;
/// Paths [`lossy_matches`] returns at most.
const MAX_LOSSY_MATCHES: usize = 16;

/// The existing paths whose lossy UTF-8 spelling is `recorded`, a path a
/// trace recorded with U+FFFD for the bytes of a file name that were not
/// UTF-8 (wrec records paths as UTF-8 text). Each component holding U+FFFD
/// is matched against the entries of its directory, the others taken as
/// they are. Bounded: at most 10 000 entries of each directory are looked
/// at and 16 paths returned; empty if `recorded` holds no U+FFFD or is not
/// absolute. The caller checks each against the recorded hash.
pub fn lossy_matches(recorded: &str) -> Vec<std::path::PathBuf> {
    use std::path::{Component, PathBuf};
    let recorded = Path::new(recorded);
    if !recorded.is_absolute() || !recorded.to_string_lossy().contains('\u{FFFD}') {
        return Vec::new();
    }
    let mut found = vec![PathBuf::from("/")];
    for c in recorded.components() {
        let Component::Normal(name) = c else {
            continue;
        };
        let name = name.to_string_lossy();
        if !name.contains('\u{FFFD}') {
            found.iter_mut().for_each(|p| p.push(&*name));
            continue;
        }
        let mut next = Vec::new();
        for dir in &found {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for e in entries.take(MAX_DIR_ENTRIES).flatten() {
                if e.file_name().to_string_lossy() == name && next.len() < MAX_LOSSY_MATCHES {
                    next.push(dir.join(e.file_name()));
                }
            }
        }
        found = next;
    }
    found.retain(|p| p.exists());
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_within_the_limit_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let small = dir.path().join("small");
        std::fs::write(&small, b"12345").unwrap();
        assert_eq!(read_bounded(&small, 5).unwrap(), b"12345");
        let e = read_bounded(&small, 4).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::FileTooLarge);
        assert_eq!(e.to_string(), "larger than 4 bytes (5 bytes or more)");

        let e = read_bounded(dir.path(), 1 << 20).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::IsADirectory);
        assert_eq!(e.to_string(), "a directory, not a regular file");

        let e = read_bounded(Path::new("/dev/zero"), 1 << 20).unwrap_err();
        assert_eq!(e.to_string(), "a character device, not a regular file");

        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = read_bounded(&fifo, 1 << 20).unwrap_err();
        assert_eq!(e.to_string(), "a FIFO (named pipe), not a regular file");

        // A sparse file: its size alone refuses it, nothing is read.
        let huge = dir.path().join("huge");
        File::create(&huge).unwrap().set_len(1 << 40).unwrap();
        let e = read_bounded(&huge, MAX_MODULE_BYTES).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::FileTooLarge);
        assert_eq!(
            e.to_string(),
            format!("larger than 1 GiB ({} bytes or more)", 1u64 << 40)
        );
        assert_eq!(size(128 << 20), "128 MiB");
    }

    #[test]
    fn a_file_that_claims_no_size_is_still_read_within_the_limit() {
        // /proc files say 0 bytes and then give more.
        let e = read_bounded(Path::new("/proc/self/maps"), 16).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::FileTooLarge);
        assert!(read_bounded(Path::new("/proc/self/maps"), 1 << 24).is_ok());
    }
}
