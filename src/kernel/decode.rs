//! Decoding helpers shared by the kernels, over bytes viewed as little-endian u32 words (WGSL has
//! no 8- or 16-bit storage, so every byte and the f16 `d` come out of u32 loads with shifts: the
//! loads themselves are [`super::formats`]' `load_u32`, `load_byte` and `load_f16`).

use cubecl::prelude::*;

/// The f16 whose bits are the low 16 bits of `h` (the rest zero), as f32; exact for every f16,
/// integer operations only, branch-free (normal, zero or subnormal, infinite or NaN: each case
/// formed and one selected).
#[cube]
pub fn f16_bits_to_f32(h: u32) -> f32 {
    let sign = (h & 0x8000u32) << 16u32;
    let exp = (h >> 10u32) & 0x1Fu32;
    let man = h & 0x3FFu32;
    let normal = sign | ((exp + 112u32) << 23u32) | (man << 13u32);
    let special = sign | 0x7F80_0000u32 | (man << 13u32);
    let bits = select(exp == 31u32, special, normal);
    // zero or subnormal: man · 2⁻²⁴, exact in f32, with the sign's bit
    let tiny = f32::reinterpret(u32::reinterpret(f32::cast_from(man) * 5.960_464_5e-8f32) | sign);
    select(exp == 0u32, tiny, f32::reinterpret(bits))
}
/// Sign-extends a byte (an `int8` sub-block scale) to i32.
#[cube]
pub fn sign_extend(b: u32) -> i32 {
    (i32::cast_from(b) ^ 0x80i32) - 0x80i32
}
