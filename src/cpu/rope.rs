//! NEOX rotary position embedding, the angles' cosines and sines read from tables.

use crate::quant::PackError;

/// RoPE of `x` (rows `[.., t, heads]` of `2 · half` values) at positions `start..start + t`:
/// pair `i` of a row at position `p` turns by the angle of `cos[p · half + i]` and
/// `sin[p · half + i]` (tables of `half` values per position, covering `start + t` positions).
pub fn rope(
    x: &[f32],
    cos: &[f32],
    sin: &[f32],
    (t, heads, half): (usize, usize, usize),
    start: usize,
) -> Result<Vec<f32>, PackError> {
    let width = 2 * half;
    let rows = x.len().checked_div(width).unwrap_or(0);
    super::check_input(x, rows, width)?;
    for table in [cos, sin] {
        if table.len() < (start + t) * half {
            return Err(PackError::InputLength {
                rows: start + t,
                width: half,
                found: table.len(),
            });
        }
    }
    let mut y = vec![0f32; x.len()];
    for (row, (xs, ys)) in x
        .chunks_exact(width)
        .zip(y.chunks_exact_mut(width))
        .enumerate()
    {
        let at = (start + (row / heads.max(1)) % t.max(1)) * half;
        rope_row(xs, &cos[at..at + half], &sin[at..at + half], ys);
    }
    Ok(y)
}

/// One row of [`rope`]: `x` and `y` of `2 · half` values, `c` and `s` the `half` cosines and
/// sines of the row's position.
pub(crate) fn rope_row(x: &[f32], c: &[f32], s: &[f32], y: &mut [f32]) {
    let half = c.len();
    let (x1, x2) = x.split_at(half);
    let (y1, y2) = y.split_at_mut(half);
    for i in 0..half {
        y1[i] = x1[i] * c[i] - x2[i] * s[i];
        y2[i] = x1[i] * s[i] + x2[i] * c[i];
    }
}
