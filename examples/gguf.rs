//! `gguf`: inspect, dequantize and quantize GGUF files.
//!
//! ```text
//! cargo run --release --example gguf -- inspect FILE [--json]
//! cargo run --release --example gguf -- dequantize FILE TENSOR OUT.f32
//! cargo run --release --example gguf -- quantize IN.gguf OUT.gguf --type q6_k
//! ```
//!
//! Errors print one line to stderr and exit with status 1.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use burn_gguf::gguf::{GgufFile, GgufWriter, MetadataValue, TensorInfo};
use burn_gguf::quant::{BlockQ6K, GgmlType, QK_K, q6k};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

#[derive(Parser)]
#[command(
    name = "gguf",
    about = "Inspect, dequantize and quantize GGUF files (burn-gguf)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the version, alignment, metadata, tensor table and per-type totals.
    Inspect {
        /// The GGUF file.
        file: PathBuf,
        /// Print JSON: {"version","alignment","data_offset","metadata":{..},"tensors":[..]}.
        #[arg(long)]
        json: bool,
    },
    /// Write one tensor as raw little-endian f32, ne0 fastest.
    Dequantize {
        /// The GGUF file.
        file: PathBuf,
        /// The tensor's name.
        tensor: String,
        /// Output file.
        out: PathBuf,
    },
    /// Copy a GGUF, converting every 2-D F32/F16/BF16 tensor whose ne0 is a multiple of 256
    /// (ggml-exact quantizer); everything else and all metadata unchanged.
    Quantize {
        /// Input GGUF.
        input: PathBuf,
        /// Output GGUF (must differ from the input).
        output: PathBuf,
        /// Target type (only q6_k).
        #[arg(long = "type", default_value = "q6_k")]
        ty: String,
        /// Threads (0 = all cores).
        #[arg(long, default_value_t = 0)]
        threads: usize,
    },
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inspect { file, json } => inspect(&file, json),
        Command::Dequantize { file, tensor, out } => dequantize(&file, &tensor, &out),
        Command::Quantize {
            input,
            output,
            ty,
            threads,
        } => quantize(&input, &output, &ty, threads),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let msg = e.to_string().replace('\n', " ");
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}

// ----------------------------------------------------------------------------------------------
// inspect

/// A float as JSON: the shortest decimal that reads back to the same value; non-finite values
/// as the strings "nan", "inf", "-inf" (JSON has no such numbers).
fn json_float(v: f64, shortest: String) -> Value {
    if v.is_finite() {
        shortest
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::Null, Value::Number)
    } else if v.is_nan() {
        json!("nan")
    } else {
        json!(if v > 0.0 { "inf" } else { "-inf" })
    }
}

fn value_json(v: &MetadataValue) -> Value {
    match v {
        MetadataValue::F32(f) => json_float(f64::from(*f), f.to_string()),
        MetadataValue::F64(f) => json_float(*f, f.to_string()),
        MetadataValue::Bool(b) => json!(b),
        MetadataValue::String(s) => json!(s.to_string_lossy()),
        MetadataValue::Array(a) => Value::Array(a.values().map(|e| value_json(&e)).collect()),
        other => {
            let i = other
                .as_integer()
                .expect("the remaining variants are integers");
            u64::try_from(i)
                .map(|u| json!(u))
                .unwrap_or_else(|_| json!(i as i64))
        }
    }
}

/// A value for the text listing: arrays longer than 8 elements summarized.
fn value_text(v: &MetadataValue) -> String {
    match v {
        MetadataValue::Array(a) if a.len() > 8 => {
            let head: Vec<String> = (0..4)
                .filter_map(|i| a.get(i))
                .map(|e| e.to_string())
                .collect();
            format!("[{}, ... {} more]", head.join(", "), a.len() - 4)
        }
        MetadataValue::String(s) if s.0.len() > 120 => {
            let text = s.to_string_lossy();
            let cut: String = text.chars().take(100).collect();
            format!("{cut:?}... ({} bytes)", s.0.len())
        }
        other => other.to_string(),
    }
}

fn type_text(v: &MetadataValue) -> String {
    match v {
        MetadataValue::Array(a) => format!("{}[{}]", v.type_description(), a.len()),
        _ => v.type_description(),
    }
}

fn inspect(path: &Path, as_json: bool) -> Result<()> {
    let file = GgufFile::open(path)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if as_json {
        let metadata: serde_json::Map<String, Value> = file
            .metadata()
            .iter()
            .map(|(k, v)| (k.clone(), value_json(v)))
            .collect();
        let tensors: Vec<Value> = file
            .tensors()
            .iter()
            .map(|t| {
                json!({"name": t.name, "type": t.ggml_type.name(), "dims": t.dims,
                       "offset": t.offset, "n_bytes": t.n_bytes()})
            })
            .collect();
        let doc = json!({"version": file.version(), "alignment": file.alignment(),
                         "data_offset": file.data_offset(), "metadata": metadata, "tensors": tensors});
        serde_json::to_writer(&mut out, &doc)?;
        writeln!(out)?;
        return Ok(out.flush()?);
    }
    writeln!(out, "{}: {} bytes", path.display(), file.len())?;
    writeln!(
        out,
        "GGUF v{}, alignment {}, tensor data at byte {}",
        file.version(),
        file.alignment(),
        file.data_offset()
    )?;
    writeln!(out, "\nmetadata ({} keys):", file.metadata().len())?;
    let key_w = file
        .metadata()
        .iter()
        .map(|(k, _)| k.len())
        .max()
        .unwrap_or(0);
    for (k, v) in file.metadata() {
        writeln!(out, "  {k:<key_w$}  {:<16} {}", type_text(v), value_text(v))?;
    }
    writeln!(out, "\ntensors ({}):", file.tensors().len())?;
    let name_w = file
        .tensors()
        .iter()
        .map(|t| t.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    writeln!(
        out,
        "  {:<name_w$}  {:<8} {:<22} {:>12} {:>12}",
        "name", "type", "dims (ne)", "offset", "bytes"
    )?;
    let mut totals: BTreeMap<String, (usize, u64, u64)> = BTreeMap::new();
    for t in file.tensors() {
        let dims = format!("{:?}", t.dims);
        let bytes = t.n_bytes().map_or("?".to_string(), |b| b.to_string());
        writeln!(
            out,
            "  {:<name_w$}  {:<8} {dims:<22} {:>12} {bytes:>12}",
            t.name,
            t.ggml_type.name(),
            t.offset
        )?;
        let e = totals.entry(t.ggml_type.name()).or_default();
        *e = (
            e.0 + 1,
            e.1 + t.n_elements(),
            e.2 + t.n_bytes().unwrap_or(0),
        );
    }
    writeln!(out, "\ntotals per type:")?;
    for (ty, (n, elements, bytes)) in &totals {
        writeln!(
            out,
            "  {ty:<8} {n:>5} tensors {elements:>14} elements {bytes:>14} bytes"
        )?;
    }
    Ok(out.flush()?)
}

// ----------------------------------------------------------------------------------------------
// dequantize

fn dequantize(path: &Path, tensor: &str, out: &Path) -> Result<()> {
    let file = GgufFile::open(path)?;
    let values = file.dequantize(tensor)?;
    let mut w = std::io::BufWriter::new(
        std::fs::File::create(out).map_err(|e| format!("{}: {e}", out.display()))?,
    );
    for v in &values {
        w.write_all(&v.to_le_bytes())?;
    }
    w.flush().map_err(|e| format!("{}: {e}", out.display()))?;
    eprintln!(
        "{tensor}: {} values written to {}",
        values.len(),
        out.display()
    );
    Ok(())
}

// ----------------------------------------------------------------------------------------------
// quantize

fn quantize(input: &Path, output: &Path, ty: &str, threads: usize) -> Result<()> {
    if GgmlType::from_name(ty) != Some(GgmlType::Q6_K) {
        return Err(format!("--type {ty}: only q6_k is supported").into());
    }
    if output.exists() && std::fs::canonicalize(input)? == std::fs::canonicalize(output)? {
        return Err("the output must not be the input file".into());
    }
    let file = GgufFile::open(input)?;
    let eligible = |t: &TensorInfo| {
        t.dims.len() == 2
            && matches!(t.ggml_type, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16)
            && t.dims[0].is_multiple_of(QK_K as u64)
    };
    let todo: u64 = file
        .tensors()
        .iter()
        .filter(|t| eligible(t))
        .map(|t| t.n_elements())
        .sum();
    let bar = ProgressBar::new(todo).with_style(
        ProgressStyle::with_template("{msg:30!} [{bar:30}] {percent:>3}% {elapsed}")
            .expect("valid template"),
    );

    let mut w = GgufWriter::new();
    for (k, v) in file.metadata() {
        w.add_metadata(k.clone(), v.clone())?;
    }
    let mut converted = 0;
    for t in file.tensors() {
        if eligible(t) {
            bar.set_message(t.name.clone());
            let x = file.dequantize(&t.name)?;
            let blocks = q6k::quantize(&x, threads).expect("ne0 is a multiple of 256");
            w.add_tensor(
                t.name.clone(),
                &t.dims,
                GgmlType::Q6_K,
                BlockQ6K::slice_as_bytes(&blocks).to_vec(),
            )?;
            bar.inc(t.n_elements());
            converted += 1;
        } else {
            w.add_tensor(
                t.name.clone(),
                &t.dims,
                t.ggml_type,
                file.tensor_data(&t.name)?,
            )?;
        }
    }
    if converted > 0 && file.get("general.quantization_version").is_none() {
        // The spec requires it whenever a tensor is quantized.
        w.add_metadata("general.quantization_version", 2u32)?;
    }
    bar.finish_and_clear();
    w.write_file(output)?;
    let kept = file.tensors().len() - converted;
    eprintln!(
        "{}: {converted} tensors converted to q6_K, {kept} copied unchanged",
        output.display()
    );
    Ok(())
}
