//! Source files: finding the files DWARF names on this machine, and reading
//! them within bounds, for the profile to embed (`--dwarf`) and for
//! `wanalyze view` to serve.
//!
//! A path from DWARF is found, first match wins:
//! 1. through `--source-map FROM=TO`: a path starting with the components
//!    of `FROM` has them replaced by `TO` (the longest `FROM` that matches);
//! 2. as it is: relative to the current directory, or absolute;
//! 3. under each `--source-root DIR`, in order: `DIR/PATH` (an absolute
//!    `PATH` without its leading `/`).
//!
//! The paths come from the module's DWARF, which is input like the trace:
//! only regular files are read (a directory, a device or a FIFO named
//! there is skipped; [`files::read_bounded`], as for every file an input
//! names), at most [`MAX_FILE_BYTES`] each and
//! [`MAX_TOTAL_BYTES`] in all, and every file left out is named in one
//! warning with the flag that would change it.

use std::path::{Component, Path, PathBuf};

use crate::files;
use crate::model::{Profile, SourceText};

/// The largest source file read.
pub const MAX_FILE_BYTES: u64 = 8 << 20;
/// The most source text read for one profile.
pub const MAX_TOTAL_BYTES: u64 = 32 << 20;
/// Files named in a warning before the rest are counted.
const MAX_NAMED: usize = 8;

/// Where to look for source files.
#[derive(Debug, Clone, Default)]
pub struct SourcePaths {
    /// `--source-root` directories.
    pub roots: Vec<PathBuf>,
    /// `--source-map FROM=TO` prefixes, as given.
    pub maps: Vec<(PathBuf, PathBuf)>,
}

/// Why a file was not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Missing {
    /// No candidate path is a regular file.
    NotFound,
    /// Larger than [`MAX_FILE_BYTES`].
    TooLarge,
    /// Reading it would pass [`MAX_TOTAL_BYTES`].
    OverTotal,
}

impl SourcePaths {
    /// Parses a `--source-map` value `FROM=TO`.
    pub fn parse_map(s: &str) -> Result<(PathBuf, PathBuf), String> {
        match s.split_once('=') {
            Some((from, to)) if !from.is_empty() && !to.is_empty() => {
                Ok((PathBuf::from(from), PathBuf::from(to)))
            }
            _ => Err(format!("--source-map takes FROM=TO, not {s:?}")),
        }
    }

    /// The paths tried for `file`, in order.
    pub fn candidates(&self, file: &str) -> Vec<PathBuf> {
        let path = Path::new(file);
        let mut out = Vec::new();
        let mapped = self
            .maps
            .iter()
            .filter_map(|(from, to)| Some((from, to.join(path.strip_prefix(from).ok()?))))
            .max_by_key(|(from, _)| from.components().count());
        if let Some((_, p)) = mapped {
            out.push(p);
        }
        out.push(path.to_path_buf());
        let relative: PathBuf = path
            .components()
            .filter(|c| !matches!(c, Component::RootDir | Component::Prefix(_)))
            .collect();
        for root in &self.roots {
            out.push(root.join(&relative));
        }
        out
    }

    /// The first candidate of `file` that is a regular file.
    pub fn find(&self, file: &str) -> Option<PathBuf> {
        self.candidates(file)
            .into_iter()
            .find(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file()))
    }

    /// The text of `file` (invalid UTF-8 replaced), if it is found, is at
    /// most [`MAX_FILE_BYTES`] and fits in `budget`, which it is taken from.
    pub fn read(&self, file: &str, budget: &mut u64) -> Result<String, Missing> {
        let path = self.find(file).ok_or(Missing::NotFound)?;
        // Checked again on the opened file, which cannot have been swapped
        // for a FIFO or a device since `find` looked.
        let bytes = files::read_bounded(&path, MAX_FILE_BYTES).map_err(|e| match e.kind() {
            std::io::ErrorKind::FileTooLarge => Missing::TooLarge,
            _ => Missing::NotFound,
        })?;
        let n = bytes.len() as u64;
        if n > *budget {
            return Err(Missing::OverTotal);
        }
        *budget -= n;
        Ok(String::from_utf8(bytes)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
    }
}

/// The files the profile's functions name, sorted, once each.
pub fn files(p: &Profile) -> Vec<&str> {
    let mut v: Vec<&str> = p.funcs.iter().filter_map(|f| f.file.as_deref()).collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// Reads the text of every file the profile's functions name into
/// [`Profile::sources`]; returns the warnings about the files left out.
pub fn embed(p: &mut Profile, paths: &SourcePaths) -> Vec<String> {
    let mut budget = MAX_TOTAL_BYTES;
    let mut missing: [Vec<String>; 3] = Default::default();
    let mut texts = Vec::new();
    for file in files(p) {
        match paths.read(file, &mut budget) {
            Ok(text) => texts.push(SourceText {
                file: file.to_owned(),
                text,
            }),
            Err(why) => {
                let k = match why {
                    Missing::NotFound => 0,
                    Missing::TooLarge => 1,
                    Missing::OverTotal => 2,
                };
                missing[k].push(file.to_owned());
            }
        }
    }
    p.sources = texts;
    let [not_found, too_large, over_total] = missing;
    let mut warnings = Vec::new();
    if !not_found.is_empty() {
        warnings.push(format!(
            "{} not found, so the profile has no text for {}: {}; pass --source-root DIR (the directory the build ran in) or --source-map FROM=TO (a path prefix the build used → where the files are here)",
            count(not_found.len(), "source file"),
            if not_found.len() == 1 { "it" } else { "them" },
            named(&not_found)
        ));
    }
    if !too_large.is_empty() {
        warnings.push(format!(
            "{} over {} MiB left out of the profile: {}",
            count(too_large.len(), "source file"),
            MAX_FILE_BYTES >> 20,
            named(&too_large)
        ));
    }
    if !over_total.is_empty() {
        warnings.push(format!(
            "{} left out of the profile, which holds at most {} MiB of source text: {}; --no-sources leaves all out",
            count(over_total.len(), "source file"),
            MAX_TOTAL_BYTES >> 20,
            named(&over_total)
        ));
    }
    warnings
}

fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// The first few of `files`, then how many more.
fn named(files: &[String]) -> String {
    let mut s = files
        .iter()
        .take(MAX_NAMED)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if files.len() > MAX_NAMED {
        s.push_str(&format!(" and {} more", files.len() - MAX_NAMED));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_map_then_as_is_then_roots() {
        let paths = SourcePaths {
            roots: vec!["/r".into()],
            maps: vec![
                ("/build".into(), "/here".into()),
                ("/build/deep".into(), "/there".into()),
            ],
        };
        assert_eq!(
            paths.candidates("/build/deep/a.c"),
            [
                PathBuf::from("/there/a.c"),
                "/build/deep/a.c".into(),
                "/r/build/deep/a.c".into()
            ]
        );
        assert_eq!(
            paths.candidates("src/a.c"),
            [PathBuf::from("src/a.c"), "/r/src/a.c".into()]
        );
        // A prefix matches whole components only.
        assert_eq!(
            paths.candidates("/builds/a.c")[0],
            PathBuf::from("/builds/a.c")
        );
        assert!(SourcePaths::parse_map("a=b").is_ok());
        assert!(SourcePaths::parse_map("a").is_err());
        assert!(SourcePaths::parse_map("=b").is_err());
    }

    #[test]
    fn reads_regular_files_within_bounds() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.c"), "int a;\n").unwrap();
        std::fs::create_dir(dir.path().join("d.c")).unwrap();
        let paths = SourcePaths {
            roots: vec![dir.path().to_owned()],
            maps: Vec::new(),
        };
        let mut budget = 100;
        assert_eq!(paths.read("a.c", &mut budget).unwrap(), "int a;\n");
        assert_eq!(budget, 93);
        assert_eq!(paths.read("d.c", &mut budget), Err(Missing::NotFound));
        assert_eq!(paths.read("nope.c", &mut budget), Err(Missing::NotFound));
        let mut small = 3;
        assert_eq!(paths.read("a.c", &mut small), Err(Missing::OverTotal));
        assert_eq!(small, 3);
        let big = std::fs::File::create(dir.path().join("big.c")).unwrap();
        big.set_len(MAX_FILE_BYTES + 1).unwrap();
        assert_eq!(paths.read("big.c", &mut budget), Err(Missing::TooLarge));
    }
}
