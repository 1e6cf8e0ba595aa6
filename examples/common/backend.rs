//! Shared by the examples: which runtime `--backend` means when it is not given.

/// `asked`, else the first runtime built of cuda, ndarray (both opt-in features, so building
/// one says it is wanted) and wgpu (the default feature).
pub fn backend_name(asked: Option<&str>) -> String {
    asked
        .unwrap_or(if cfg!(feature = "cuda") {
            "cuda"
        } else if cfg!(feature = "ndarray") {
            "ndarray"
        } else {
            "wgpu"
        })
        .to_string()
}
