//! The one kernel source compiles for Metal too: its MSL text is generated here without a device
//! (no Mac in CI or on the GPU machine, so Metal itself is not run).
#![cfg(feature = "wgpu")]

use burn_gguf::kernel::q6k_gemv_msl_source;

#[test]
fn gemv_compiles_to_metal_shading_language() {
    for (m, use_plane) in [(1, true), (8, true), (3, false)] {
        let msl = q6k_gemv_msl_source(m, use_plane).unwrap_or_else(|e| panic!("m={m}: {e}"));
        assert!(msl.contains("#include <metal_stdlib>"), "{msl}");
        assert!(
            msl.contains("[[kernel]]") && msl.contains("q6k_gemv_kernel"),
            "{msl}"
        );
        assert!(msl.contains("device"), "buffers are device memory: {msl}");
        if use_plane {
            assert!(
                msl.contains("simd_sum"),
                "the plane variant reduces with simd_sum: {msl}"
            );
        } else {
            assert!(
                msl.contains("threadgroup_barrier"),
                "the shared-memory variant syncs: {msl}"
            );
        }
        // no 8/16-bit storage types in the buffers
        assert!(
            !msl.contains("device uchar") && !msl.contains("device ushort"),
            "{msl}"
        );
    }
    let src = q6k_gemv_msl_source(2, true).unwrap();
    eprintln!(
        "MSL for m = 2 ({} lines), first lines:\n{}",
        src.lines().count(),
        src.lines().take(30).collect::<Vec<_>>().join("\n")
    );
}
