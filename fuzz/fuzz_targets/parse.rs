//! Fuzzes the GGUF reader: any input must parse or fail with a typed error, never panic, and a
//! parsed file must survive every accessor (metadata, tensor bytes, dequantization).
#![no_main]

use burn_gguf::gguf::{GgufFile, ParseOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for strict in [false, true] {
        let Ok(file) = GgufFile::from_bytes_with(data, ParseOptions { strict }) else {
            continue;
        };
        for (key, value) in file.metadata() {
            let _ = (value.to_string(), file.get_u64(key), file.get_f64(key), file.get_str(key));
        }
        for t in file.tensors() {
            let _ = (t.shape(), file.tensor_data(&t.name).map(<[u8]>::len));
            if t.n_elements() <= 1 << 20 {
                let _ = file.dequantize(&t.name);
            }
        }
    }
});
