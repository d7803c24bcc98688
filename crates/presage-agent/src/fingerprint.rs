//! The static fingerprint of an executable — the seeds' "code characteristics (static
//! analysis)" — read from the file itself, so a program never seen before can start
//! from the profile of the most similar program that has been seen.
//!
//! - ELF: its section names, the libraries it needs, the symbols it imports.
//! - Scripts (`#!`): the interpreter, its first argument and a hash of the text.
//! - Anything else: only its name.
//!
//! Every kind also carries `path:<file name>`, so a rebuilt binary at the same name
//! scores above a different program that merely links the same libraries.

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsStr;
use std::fs::{File, Metadata};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use object::read::ReadCache;
use object::read::elf::{FileHeader, Sym};
use object::{FileKind, ReadRef, elf};
use presage_core::Fingerprint;
use sha2::{Digest, Sha256};

use crate::error::AgentError;
use crate::identity::hex;

/// At most this many `import:` features. A large C++ or Rust binary can import tens
/// of thousands of symbols; the fingerprint is stored with every profile and compared
/// against many, so it must stay small, and a few thousand imports already tell
/// programs apart. The lexicographically smallest are kept (not the first in table
/// order) so a relink that reorders the dynamic symbol table keeps the same set.
pub const MAX_IMPORTS: usize = 4096;

/// At most this many `section:` features. Linked executables have a few dozen; the cap
/// only bounds what a malformed or unusual file (one section per function) can cost.
const MAX_SECTIONS: usize = 1024;

/// At most this many `needed:` features, for the same reason as [`MAX_SECTIONS`].
const MAX_NEEDED: usize = 1024;

/// How much of a file is read to tell its kind: Linux reads 256 bytes (BINPRM_BUF_SIZE)
/// to find a `#!` line, so an interpreter line longer than that does not run either.
const HEAD_LEN: usize = 256;

/// The fingerprint of the file at `path`.
///
/// Only what is needed is read: the first bytes to tell the kind; for ELF the section
/// headers, the dynamic section and the dynamic symbol table (not the code, not the
/// static symbol table or debug info); for a script the whole text (it is hashed).
///
/// `path:` is the file name; when `path` is a symbolic link (as `/proc/<pid>/exe` is)
/// it is the name of the link's target, so a running process is named by its program
/// rather than by `exe`.
pub fn fingerprint_of_file(path: &Path) -> Result<Fingerprint, AgentError> {
    let (file, meta) = open(path)?;
    let mut fp = fingerprint_of_open(path, file, &meta)?;
    add_path_feature(&mut fp, path);
    Ok(fp)
}

/// Fingerprints of executables already read, keyed by what changes when the file does
/// (device, inode, modification time, size — as the code-id cache in `identity`), so a
/// 100 MB binary is parsed once rather than at every discovery.
#[derive(Debug, Default)]
pub struct FingerprintCache {
    // Stored without the `path:` feature: two names of one file (hard links, or
    // `/proc/<pid>/exe` and the program's own path) share the entry, and each call adds
    // the name it was asked under.
    known: HashMap<(u64, u64, i64, i64, u64), Fingerprint>,
}

impl FingerprintCache {
    /// The fingerprint of the file at `path`, as [`fingerprint_of_file`], computed at
    /// most once per version of the file.
    pub fn fingerprint(&mut self, path: &Path) -> Result<Fingerprint, AgentError> {
        // The key comes from the open file, not a separate stat of the path, so it
        // describes exactly the file that is read if the entry is missing.
        let (file, meta) = open(path)?;
        // Nanoseconds too: two writes within one second, of one size, are still two
        // versions.
        let stamp = (
            meta.dev(),
            meta.ino(),
            meta.mtime(),
            meta.mtime_nsec(),
            meta.size(),
        );
        let mut fp = match self.known.get(&stamp) {
            Some(fp) => fp.clone(),
            None => {
                let fp = fingerprint_of_open(path, file, &meta)?;
                self.known.insert(stamp, fp.clone());
                fp
            }
        };
        add_path_feature(&mut fp, path);
        Ok(fp)
    }

    /// How many versions of files are cached.
    pub fn len(&self) -> usize {
        self.known.len()
    }

    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }
}

fn open(path: &Path) -> Result<(File, Metadata), AgentError> {
    let file = File::open(path).map_err(|source| AgentError::Io {
        context: format!("opening executable {}", path.display()),
        source,
    })?;
    let meta = file.metadata().map_err(|source| AgentError::Io {
        context: format!("reading metadata of executable {}", path.display()),
        source,
    })?;
    Ok((file, meta))
}

fn read_error(path: &Path) -> impl FnOnce(std::io::Error) -> AgentError + '_ {
    move |source| AgentError::Io {
        context: format!("reading executable {}", path.display()),
        source,
    }
}

/// The fingerprint without `path:`.
fn fingerprint_of_open(
    path: &Path,
    mut file: File,
    meta: &Metadata,
) -> Result<Fingerprint, AgentError> {
    let head = read_head(&mut file).map_err(read_error(path))?;
    let size = meta.size();
    if head.starts_with(&elf::ELFMAG) {
        let features = elf_features(file).map_err(|e| AgentError::Corrupt {
            path: path.to_path_buf(),
            message: format!("not a valid ELF file: {e}"),
        })?;
        return Ok(Fingerprint {
            kind: "elf".into(),
            size,
            features,
        });
    }
    if head.starts_with(b"#!") {
        let features = script_features(&head, &mut file).map_err(read_error(path))?;
        return Ok(Fingerprint {
            kind: "script".into(),
            size,
            features,
        });
    }
    Ok(Fingerprint {
        kind: "other".into(),
        size,
        features: BTreeSet::new(),
    })
}

/// Up to [`HEAD_LEN`] bytes from the start (fewer only at the end of the file).
fn read_head(file: &mut File) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(HEAD_LEN);
    file.by_ref().take(HEAD_LEN as u64).read_to_end(&mut head)?;
    Ok(head)
}

fn add_path_feature(fp: &mut Fingerprint, path: &Path) {
    if let Some(name) = program_name(path) {
        fp.features.insert(format!("path:{name}"));
    }
}

/// The file name `path:` carries: the link target's for a symbolic link (one level —
/// what `/proc/<pid>/exe` needs), else the path's own.
fn program_name(path: &Path) -> Option<String> {
    let is_link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    let named = if is_link {
        std::fs::read_link(path).ok()
    } else {
        None
    }
    .unwrap_or_else(|| path.to_path_buf());
    let name = named.file_name()?.as_bytes();
    // /proc/<pid>/exe of a binary deleted since the process started reads
    // "<path> (deleted)"; the program's name is still the part before.
    let name = name.strip_suffix(b" (deleted)").unwrap_or(name);
    (!name.is_empty()).then(|| String::from_utf8_lossy(name).into_owned())
}

/// Inserts `feature`, keeping only the `cap` smallest features of the set: bounded
/// memory, and a result that does not depend on the order features come in.
fn insert_capped(set: &mut BTreeSet<String>, feature: String, cap: usize) {
    set.insert(feature);
    if set.len() > cap {
        set.pop_last();
    }
}

fn elf_features(file: File) -> Result<BTreeSet<String>, String> {
    // Reads go through the cache: only the byte ranges the parser asks for are read
    // from the file, never the whole binary.
    let data = ReadCache::new(file);
    let features = match FileKind::parse(&data).map_err(|e| e.to_string())? {
        FileKind::Elf32 => elf_features_of::<elf::FileHeader32<object::Endianness>, _>(&data),
        FileKind::Elf64 => elf_features_of::<elf::FileHeader64<object::Endianness>, _>(&data),
        // The magic said ELF, so only the class byte can be wrong.
        _ => return Err("unknown ELF class".into()),
    };
    features.map_err(|e| e.to_string())
}

fn elf_features_of<'data, Elf: FileHeader<Endian = object::Endianness>, R: ReadRef<'data>>(
    data: R,
) -> object::read::Result<BTreeSet<String>> {
    // The low-level API rather than `ElfFile::parse`, which also loads the static
    // symbol table (`.symtab`, megabytes in an unstripped binary) that is not used.
    let header = Elf::parse(data)?;
    let endian = header.endian()?;
    let sections = header.sections(endian, data)?;
    let mut sect = BTreeSet::new();
    for section in sections.iter() {
        let name = sections.section_name(endian, section)?;
        if !name.is_empty() {
            let name = String::from_utf8_lossy(name);
            insert_capped(&mut sect, format!("section:{name}"), MAX_SECTIONS);
        }
    }
    let mut needed = BTreeSet::new();
    let dynamic = sections.dynamic_table(endian, data)?;
    for entry in dynamic.iter() {
        if entry.tag == elf::DT_NEEDED {
            let soname = String::from_utf8_lossy(dynamic.string(entry)?);
            insert_capped(&mut needed, format!("needed:{soname}"), MAX_NEEDED);
        }
    }
    let mut imports = BTreeSet::new();
    let dynsym = sections.symbols(endian, data, elf::SHT_DYNSYM)?;
    // Entry 0 is the reserved null symbol.
    for symbol in dynsym.iter().skip(1) {
        if !symbol.is_undefined(endian) {
            continue;
        }
        let name = symbol.name(endian, dynsym.strings())?;
        // Versions live in .gnu.version, not in the name, but a `name@VERSION` from a
        // tool that writes them inline must match the same import without one.
        let name = name.split(|b| *b == b'@').next().unwrap_or(name);
        if !name.is_empty() {
            let name = String::from_utf8_lossy(name);
            insert_capped(&mut imports, format!("import:{name}"), MAX_IMPORTS);
        }
    }
    sect.append(&mut needed);
    sect.append(&mut imports);
    Ok(sect)
}

/// `interp:`, `interparg:` and `script:` of a script whose first bytes are `head`; the
/// rest of the text is read from `file` (positioned just after `head`) for the hash.
fn script_features(head: &[u8], file: &mut File) -> std::io::Result<BTreeSet<String>> {
    let mut features = BTreeSet::new();
    let (interp, arg) = parse_shebang(head);
    if let Some(interp) = interp {
        features.insert(format!("interp:{interp}"));
    }
    if let Some(arg) = arg {
        features.insert(format!("interparg:{arg}"));
    }
    let mut hasher = Sha256::new();
    hasher.update(head);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    // 128 bits tell scripts apart, as in `input_hash`.
    features.insert(format!("script:{}", hex(&hasher.finalize()[..16])));
    Ok(features)
}

/// The interpreter and its first argument from a `#!` line (`head` starts with `#!`).
///
/// For `env` the first argument that is not an option is taken (`#!/usr/bin/env -S
/// python3 -u` → `python3`): the program env runs says more than `-S`. Options of env
/// that take a separate value (`-u NAME`) are not understood; their value is taken.
fn parse_shebang(head: &[u8]) -> (Option<String>, Option<String>) {
    let line = head.get(2..).unwrap_or_default();
    let line = line.split(|b| *b == b'\n').next().unwrap_or(line);
    let mut words = line
        .split(|b| b.is_ascii_whitespace())
        .filter(|w| !w.is_empty())
        .map(|w| String::from_utf8_lossy(w).into_owned());
    let Some(interp) = words.next() else {
        return (None, None);
    };
    let is_env = Path::new(&interp).file_name() == Some(OsStr::new("env"));
    let arg = if is_env {
        words.find(|w| !w.starts_with('-'))
    } else {
        words.next()
    };
    (Some(interp), arg)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Binaries of Debian 12 that are not coreutils and share little with them.
    const DIFFERENT: [&str; 4] = [
        "/usr/bin/perl",
        "/usr/bin/python3",
        "/usr/bin/gdb",
        "/usr/bin/git",
    ];

    fn fp(path: &str) -> Fingerprint {
        fingerprint_of_file(Path::new(path)).unwrap()
    }

    fn without_path(fp: &Fingerprint) -> BTreeSet<String> {
        fp.features
            .iter()
            .filter(|f| !f.starts_with("path:"))
            .cloned()
            .collect()
    }

    fn write(path: &Path, bytes: &[u8]) {
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn an_elf_binary_has_sections_libraries_imports_and_its_name() {
        let ls = fp("/bin/ls");
        assert_eq!(ls.kind, "elf");
        assert_eq!(ls.size, std::fs::metadata("/bin/ls").unwrap().len());
        for f in [
            "section:.text",
            "section:.dynsym",
            "needed:libc.so.6",
            "path:ls",
        ] {
            assert!(
                ls.features.contains(f),
                "{f} missing from {:?}",
                ls.features
            );
        }
        assert!(ls.features.contains("import:malloc") || ls.features.contains("import:free"));
        assert!(
            !ls.features.iter().any(|f| f.contains('@')),
            "{:?}",
            ls.features
        );
        assert!(
            !ls.features.contains("section:"),
            "the null section is skipped"
        );
        // Only undefined symbols: ls defines none of libc's allocator entry points.
        let imports = ls
            .features
            .iter()
            .filter(|f| f.starts_with("import:"))
            .count();
        assert!((20..MAX_IMPORTS).contains(&imports), "{imports} imports");
        assert!((ls.similarity(&ls) - 1.0).abs() < 1e-12);
        assert!((ls.similarity(&fp("/bin/ls")) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn coreutils_are_closer_to_each_other_than_to_a_different_program() {
        let ls = fp("/bin/ls");
        let cat = fp("/bin/cat");
        let ls_cat = ls.similarity(&cat);
        println!("ls vs cat: {ls_cat:.4}");
        let mut compared = 0;
        for other in DIFFERENT {
            if !Path::new(other).exists() {
                println!("skipping {other}: not installed");
                continue;
            }
            let other_fp = fp(other);
            assert_eq!(other_fp.kind, "elf", "{other}");
            let s = ls.similarity(&other_fp);
            println!("ls vs {other}: {s:.4}");
            assert!(ls_cat > s, "ls~cat {ls_cat} <= ls~{other} {s}");
            assert!(cat.similarity(&ls) > cat.similarity(&other_fp), "{other}");
            compared += 1;
        }
        if compared == 0 {
            println!("skipping the comparison: none of {DIFFERENT:?} is installed");
        }
        assert!(ls_cat > 0.0 && ls_cat < 1.0, "{ls_cat}");
    }

    #[test]
    fn a_copy_differs_only_by_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let ls = fp("/bin/ls");
        let same_name = dir.path().join("ls");
        std::fs::copy("/bin/ls", &same_name).unwrap();
        let copy = fingerprint_of_file(&same_name).unwrap();
        assert_eq!(copy, ls, "path: is the file name, not the directory");

        let renamed = dir.path().join("ls-copy");
        std::fs::copy("/bin/ls", &renamed).unwrap();
        let copy = fingerprint_of_file(&renamed).unwrap();
        assert_eq!(without_path(&copy), without_path(&ls));
        assert!(copy.features.contains("path:ls-copy"));
        assert!(!copy.features.contains("path:ls"));
        let s = ls.similarity(&copy);
        println!("ls vs ls-copy: {s:.4}");
        assert!(s < 1.0);
        assert!(s > ls.similarity(&fp("/bin/cat")), "{s}");
    }

    #[test]
    fn a_script_is_named_by_its_interpreter() {
        let dir = tempfile::tempdir().unwrap();
        let sh = dir.path().join("hi.sh");
        write(&sh, b"#!/bin/sh\necho hi\n");
        let f = fingerprint_of_file(&sh).unwrap();
        assert_eq!(f.kind, "script");
        assert_eq!(f.size, 18);
        assert!(f.features.contains("interp:/bin/sh"), "{:?}", f.features);
        assert!(f.features.contains("path:hi.sh"), "{:?}", f.features);
        assert!(!f.features.iter().any(|x| x.starts_with("interparg:")));
        let hash = f.features.iter().find_map(|x| x.strip_prefix("script:"));
        // The first 16 bytes of SHA-256("#!/bin/sh\necho hi\n"), in hex.
        let full = hex(&Sha256::digest(b"#!/bin/sh\necho hi\n"));
        assert_eq!(hash, Some(&full[..32]));
        assert_eq!(f.features.len(), 3, "{:?}", f.features);

        let py = dir.path().join("tool");
        write(&py, b"#!/usr/bin/env python3\nprint(1)\n");
        let f = fingerprint_of_file(&py).unwrap();
        assert_eq!(f.kind, "script");
        assert!(
            f.features.contains("interp:/usr/bin/env"),
            "{:?}",
            f.features
        );
        assert!(f.features.contains("interparg:python3"), "{:?}", f.features);
    }

    #[test]
    fn shebang_lines_parse_like_the_kernel_reads_them() {
        let p = |s: &[u8]| parse_shebang(s);
        let some = |s: &str| Some(s.to_string());
        assert_eq!(p(b"#!/bin/sh\necho"), (some("/bin/sh"), None));
        assert_eq!(p(b"#! /bin/bash -e\n"), (some("/bin/bash"), some("-e")));
        assert_eq!(
            p(b"#!/usr/bin/env -S python3 -u\n"),
            (some("/usr/bin/env"), some("python3"))
        );
        assert_eq!(
            p(b"#!/usr/bin/perl -w\r\n"),
            (some("/usr/bin/perl"), some("-w"))
        );
        assert_eq!(p(b"#!/bin/sh"), (some("/bin/sh"), None));
        assert_eq!(p(b"#!\n/bin/sh"), (None, None));
        assert_eq!(p(b"#!"), (None, None));
    }

    #[test]
    fn scripts_of_one_interpreter_are_alike_but_not_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (
            dir.path().join("a"),
            dir.path().join("b"),
            dir.path().join("c"),
        );
        std::fs::create_dir(&a).unwrap();
        std::fs::create_dir(&b).unwrap();
        std::fs::create_dir(&c).unwrap();
        // One name in three directories, so only the interpreter and the body differ.
        write(&a.join("job"), b"#!/bin/sh\necho hi\n");
        write(&b.join("job"), b"#!/bin/sh\necho ho\n");
        write(&c.join("job"), b"#!/usr/bin/perl\nprint 1;\n");
        let fa = fingerprint_of_file(&a.join("job")).unwrap();
        let fb = fingerprint_of_file(&b.join("job")).unwrap();
        let fc = fingerprint_of_file(&c.join("job")).unwrap();
        let ab = fa.similarity(&fb);
        let ac = fa.similarity(&fc);
        println!("script vs script (same interpreter): {ab:.4}; other interpreter: {ac:.4}");
        assert!(ab > 0.0 && ab < 1.0, "{ab}");
        assert!(ab > ac, "{ab} <= {ac}");
        assert!((fa.similarity(&fa) - 1.0).abs() < 1e-12);
        // A script and a binary are never alike.
        assert_eq!(fa.similarity(&fp("/bin/ls")), 0.0);
    }

    #[test]
    fn anything_else_is_only_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data.bin");
        write(&data, b"\x00\x01 not a program");
        let f = fingerprint_of_file(&data).unwrap();
        assert_eq!(f.kind, "other");
        assert_eq!(f.size, 16);
        assert_eq!(f.features, BTreeSet::from(["path:data.bin".to_string()]));
        let empty = dir.path().join("empty");
        write(&empty, b"");
        assert_eq!(fingerprint_of_file(&empty).unwrap().kind, "other");
    }

    #[test]
    fn a_truncated_elf_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let head = &std::fs::read("/bin/ls").unwrap()[..64];
        let bad = dir.path().join("truncated-ls");
        write(&bad, head);
        let e = fingerprint_of_file(&bad).unwrap_err();
        assert!(matches!(e, AgentError::Corrupt { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(msg.contains("truncated-ls"), "{msg}");
        assert!(msg.contains("ELF"), "{msg}");
        // Just the magic: not even a header.
        write(&bad, b"\x7fELF");
        let msg = fingerprint_of_file(&bad).unwrap_err().to_string();
        assert!(msg.contains("truncated-ls"), "{msg}");
        let mut cache = FingerprintCache::default();
        assert!(cache.fingerprint(&bad).is_err());
        assert!(cache.is_empty(), "a failure is not cached");
    }

    #[test]
    fn a_missing_file_is_an_io_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("no-such-program");
        let e = fingerprint_of_file(&gone).unwrap_err();
        assert!(matches!(e, AgentError::Io { .. }), "{e:?}");
        assert!(e.to_string().contains("no-such-program"), "{e}");
        let e = FingerprintCache::default().fingerprint(&gone).unwrap_err();
        assert!(e.to_string().contains("no-such-program"), "{e}");
    }

    #[test]
    fn the_cache_serves_a_file_once_per_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job");
        write(&path, b"#!/bin/sh\necho one\n");
        let mut cache = FingerprintCache::default();
        let first = cache.fingerprint(&path).unwrap();
        assert_eq!(first, fingerprint_of_file(&path).unwrap());
        assert_eq!(cache.fingerprint(&path).unwrap(), first);
        assert_eq!(cache.len(), 1);

        // Same size, same inode, mtime put back: indistinguishable by the key, so the
        // cached (now stale) answer proves the file was not read again.
        let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
        write(&path, b"#!/bin/sh\necho two\n");
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        assert_eq!(cache.fingerprint(&path).unwrap(), first);
        assert_ne!(fingerprint_of_file(&path).unwrap(), first);

        // Only the mtime moves: recomputed.
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(mtime + Duration::from_secs(5))
            .unwrap();
        let second = cache.fingerprint(&path).unwrap();
        assert_ne!(second, first);
        assert_eq!(second, fingerprint_of_file(&path).unwrap());

        // Rewritten at another size: recomputed.
        write(&path, b"#!/usr/bin/perl\nprint 3;\n");
        let third = cache.fingerprint(&path).unwrap();
        assert!(third.features.contains("interp:/usr/bin/perl"), "{third:?}");
        assert_eq!(third, fingerprint_of_file(&path).unwrap());
        assert_eq!(cache.len(), 3);
    }

    #[test]
    fn a_process_exe_link_is_named_by_its_program() {
        let exe = crate::identity::exe_of_process(Path::new("/proc"), std::process::id()).unwrap();
        let current = std::env::current_exe().unwrap();
        let name = current.file_name().unwrap().to_string_lossy();
        let mut cache = FingerprintCache::default();
        let via_proc = cache.fingerprint(&exe).unwrap();
        let direct = cache.fingerprint(&current).unwrap();
        assert!(
            via_proc.features.contains(&format!("path:{name}")),
            "{name}"
        );
        assert!(!via_proc.features.contains("path:exe"));
        assert_eq!(via_proc, direct);
        assert_eq!(cache.len(), 1, "one file, one entry, whatever its name");
        assert_eq!(via_proc.kind, "elf");
    }
}
