//! GGML tensor encodings and their dequantization to f32.
//!
//! Block layouts (little-endian, `d`/`m` are f16 unless noted):
//! - Q8_0, 32 values: `d`, 32 × i8; x = d·q.
//! - Q4_0, 32 values: `d`, 16 bytes of nibbles; low nibbles are values 0..16,
//!   high nibbles 16..32; x = d·(q − 8).
//! - Q4_1, 32 values: `d`, `m`, nibbles as Q4_0; x = d·q + m.
//! - Q4_K, 256 values: `d`, `dmin`, 12 bytes of packed 6-bit scales/mins for
//!   8 sub-blocks of 32, 128 bytes of nibbles (per 64 values: 32 low, 32 high);
//!   x = d·scale·q − dmin·min.
//! - Q6_K, 256 values: 128 bytes of low 4 bits, 64 bytes of high 2 bits,
//!   16 × i8 scales, then `d`; x = d·scale·(q − 32).

use anyhow::{bail, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    F32,
    F16,
    BF16,
    Q8_0,
    Q4_0,
    Q4_1,
    Q4K,
    Q6K,
}

impl Kind {
    pub fn from_ggml(id: u32) -> Result<Self> {
        Ok(match id {
            0 => Kind::F32,
            1 => Kind::F16,
            2 => Kind::Q4_0,
            3 => Kind::Q4_1,
            8 => Kind::Q8_0,
            12 => Kind::Q4K,
            14 => Kind::Q6K,
            30 => Kind::BF16,
            other => bail!("GGML type {other} is not supported (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K are)"),
        })
    }

    pub fn ggml_id(self) -> u32 {
        match self {
            Kind::F32 => 0,
            Kind::F16 => 1,
            Kind::Q4_0 => 2,
            Kind::Q4_1 => 3,
            Kind::Q8_0 => 8,
            Kind::Q4K => 12,
            Kind::Q6K => 14,
            Kind::BF16 => 30,
        }
    }

    /// (values per block, bytes per block).
    pub fn block(self) -> (u64, u64) {
        match self {
            Kind::F32 => (1, 4),
            Kind::F16 | Kind::BF16 => (1, 2),
            Kind::Q8_0 => (32, 34),
            Kind::Q4_0 => (32, 18),
            Kind::Q4_1 => (32, 20),
            Kind::Q4K => (256, 144),
            Kind::Q6K => (256, 210),
        }
    }

    pub fn bytes_for(self, elements: u64) -> Result<u64> {
        let (per, bytes) = self.block();
        if elements % per != 0 {
            bail!("{elements} values are not a whole number of {self:?} blocks of {per}");
        }
        Ok(elements / per * bytes)
    }
}

/// IEEE 754 half precision to f32.
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let frac = (h & 0x3ff) as u32;
    let bits = match (exp, frac) {
        (0, 0) => sign,
        (0, f) => {
            // Subnormal: normalise.
            let mut e = 127 - 15 + 1;
            let mut f = f;
            while f & 0x400 == 0 {
                f <<= 1;
                e -= 1;
            }
            sign | (e << 23) | ((f & 0x3ff) << 13)
        }
        (0x1f, f) => sign | 0x7f80_0000 | (f << 13),
        (e, f) => sign | ((e + 127 - 15) << 23) | (f << 13),
    };
    f32::from_bits(bits)
}

fn h(b: &[u8], i: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([b[i], b[i + 1]]))
}

/// 6-bit scale and min of Q4_K sub-block `j` (0..8) from its 12 packed bytes.
fn q4k_scale_min(j: usize, s: &[u8]) -> (f32, f32) {
    if j < 4 {
        ((s[j] & 63) as f32, (s[j + 4] & 63) as f32)
    } else {
        (((s[j + 4] & 0xf) | ((s[j - 4] >> 6) << 4)) as f32, ((s[j + 4] >> 4) | ((s[j] >> 6) << 4)) as f32)
    }
}

pub fn dequantize(kind: Kind, raw: &[u8], n: usize) -> Result<Vec<f32>> {
    let expected = kind.bytes_for(n as u64)? as usize;
    if raw.len() != expected {
        bail!("{kind:?}: {n} values need {expected} bytes, got {}", raw.len());
    }
    let mut out = Vec::with_capacity(n);
    match kind {
        Kind::F32 => out.extend(raw.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap()))),
        Kind::F16 => out.extend(raw.chunks_exact(2).map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))),
        Kind::BF16 => {
            out.extend(raw.chunks_exact(2).map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16)))
        }
        Kind::Q8_0 => {
            for b in raw.chunks_exact(34) {
                let d = h(b, 0);
                out.extend(b[2..].iter().map(|&q| d * (q as i8) as f32));
            }
        }
        Kind::Q4_0 | Kind::Q4_1 => {
            let with_min = kind == Kind::Q4_1;
            let head = if with_min { 4 } else { 2 };
            for b in raw.chunks_exact(head + 16) {
                let d = h(b, 0);
                let (m, offset) = if with_min { (h(b, 2), 0.0) } else { (0.0, 8.0) };
                let qs = &b[head..];
                out.extend(qs.iter().map(|&q| d * ((q & 0xf) as f32 - offset) + m));
                out.extend(qs.iter().map(|&q| d * ((q >> 4) as f32 - offset) + m));
            }
        }
        Kind::Q4K => {
            for b in raw.chunks_exact(144) {
                let (d, dmin) = (h(b, 0), h(b, 2));
                let scales = &b[4..16];
                let qs = &b[16..];
                for chunk in 0..4 {
                    let (sc1, m1) = q4k_scale_min(2 * chunk, scales);
                    let (sc2, m2) = q4k_scale_min(2 * chunk + 1, scales);
                    let q = &qs[32 * chunk..32 * chunk + 32];
                    out.extend(q.iter().map(|&x| d * sc1 * (x & 0xf) as f32 - dmin * m1));
                    out.extend(q.iter().map(|&x| d * sc2 * (x >> 4) as f32 - dmin * m2));
                }
            }
        }
        Kind::Q6K => {
            for b in raw.chunks_exact(210) {
                let (ql, qh, sc) = (&b[..128], &b[128..192], &b[192..208]);
                let d = h(b, 208);
                for half in 0..2 {
                    let (ql, qh, sc) = (&ql[64 * half..], &qh[32 * half..], &sc[8 * half..]);
                    let mut y = [0f32; 128];
                    for l in 0..32 {
                        let is = l / 16;
                        let q1 = ((ql[l] & 0xf) | ((qh[l] & 3) << 4)) as i32 - 32;
                        let q2 = ((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
                        let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
                        let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
                        y[l] = d * (sc[is] as i8) as f32 * q1 as f32;
                        y[l + 32] = d * (sc[is + 2] as i8) as f32 * q2 as f32;
                        y[l + 64] = d * (sc[is + 4] as i8) as f32 * q3 as f32;
                        y[l + 96] = d * (sc[is + 6] as i8) as f32 * q4 as f32;
                    }
                    out.extend_from_slice(&y);
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_precision_conversion_matches_known_bit_patterns() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x3555), 0.333_251_95);
        assert!(f16_to_f32(0x7e00).is_nan());
        assert_eq!(f16_to_f32(0xfc00), f32::NEG_INFINITY);
    }

    #[test]
    fn q8_0_block_by_hand() {
        let mut b = vec![0x00, 0x38]; // d = 0.5
        b.extend((0..32).map(|i| (i as i8 - 16) as u8));
        let x = dequantize(Kind::Q8_0, &b, 32).unwrap();
        assert_eq!(x[0], -8.0);
        assert_eq!(x[31], 7.5);
    }

    #[test]
    fn wrong_sizes_are_errors() {
        assert!(dequantize(Kind::Q4_0, &[0; 17], 32).is_err());
        assert!(Kind::Q4K.bytes_for(100).is_err());
    }
}
