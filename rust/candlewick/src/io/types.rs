//! One table of tensor storage types: plain float and integer types and GGUF's block types, each
//! with its block size (values per block) and block bytes (ggml-common.h block structs), GGUF
//! type id, safetensors name and the name users write. GGUF parsing, safetensors parsing, the
//! quantized kernels' row sizes, `candlewick info` and memory estimation all read this table.

use candle_core::quantized::GgmlDType;

use crate::error::{Error, Result};

#[derive(Debug, PartialEq, Eq)]
pub struct TensorType {
    /// ggml's name, as GGUF files and `candlewick info` show it: "F32", "Q4_K".
    pub name: &'static str,
    /// The name users write and memory estimates print: "float32", "q4_k".
    pub user_name: &'static str,
    pub gguf_id: Option<u32>,
    /// The dtype string of safetensors headers ("F32", "BF16").
    pub safetensors: Option<&'static str>,
    /// Values per block (1 for plain types).
    pub block_size: usize,
    /// Bytes per block, scales included.
    pub block_bytes: usize,
    /// Floating point: weights and parameters (integer tensors are buffers or indices).
    pub is_float: bool,
}

const fn t(
    name: &'static str,
    user_name: &'static str,
    gguf_id: Option<u32>,
    safetensors: Option<&'static str>,
    block_size: usize,
    block_bytes: usize,
    is_float: bool,
) -> TensorType {
    TensorType {
        name,
        user_name,
        gguf_id,
        safetensors,
        block_size,
        block_bytes,
        is_float,
    }
}

// Plain types.
pub const F32: TensorType = t("F32", "float32", Some(0), Some("F32"), 1, 4, true);
pub const F16: TensorType = t("F16", "float16", Some(1), Some("F16"), 1, 2, true);
pub const BF16: TensorType = t("BF16", "bfloat16", Some(30), Some("BF16"), 1, 2, true);
pub const F64: TensorType = t("F64", "float64", Some(28), Some("F64"), 1, 8, true);
pub const F8_E4M3: TensorType = t("F8_E4M3", "float8_e4m3", None, Some("F8_E4M3"), 1, 1, true);
pub const F8_E5M2: TensorType = t("F8_E5M2", "float8_e5m2", None, Some("F8_E5M2"), 1, 1, true);
pub const I8: TensorType = t("I8", "int8", Some(24), Some("I8"), 1, 1, false);
pub const I16: TensorType = t("I16", "int16", Some(25), Some("I16"), 1, 2, false);
pub const I32: TensorType = t("I32", "int32", Some(26), Some("I32"), 1, 4, false);
pub const I64: TensorType = t("I64", "int64", Some(27), Some("I64"), 1, 8, false);
pub const U8: TensorType = t("U8", "uint8", None, Some("U8"), 1, 1, false);
pub const U16: TensorType = t("U16", "uint16", None, Some("U16"), 1, 2, false);
pub const U32: TensorType = t("U32", "uint32", None, Some("U32"), 1, 4, false);
pub const U64: TensorType = t("U64", "uint64", None, Some("U64"), 1, 8, false);
pub const BOOL: TensorType = t("BOOL", "bool", None, Some("BOOL"), 1, 1, false);
// GGUF blocks of 32 values: f16 scale(s), then the quants.
/// d + 16 bytes of nibbles
pub const Q4_0: TensorType = t("Q4_0", "q4_0", Some(2), None, 32, 18, false);
/// d, m + 16
pub const Q4_1: TensorType = t("Q4_1", "q4_1", Some(3), None, 32, 20, false);
/// d + 4 bytes of fifth bits + 16
pub const Q5_0: TensorType = t("Q5_0", "q5_0", Some(6), None, 32, 22, false);
/// d, m + 4 + 16
pub const Q5_1: TensorType = t("Q5_1", "q5_1", Some(7), None, 32, 24, false);
/// d + 32 int8
pub const Q8_0: TensorType = t("Q8_0", "q8_0", Some(8), None, 32, 34, false);
/// d, s + 32 int8
pub const Q8_1: TensorType = t("Q8_1", "q8_1", Some(9), None, 32, 36, false);
// K-quant super-blocks of 256 values.
/// 16 scales + 64 quants + d, dmin
pub const Q2_K: TensorType = t("Q2_K", "q2_k", Some(10), None, 256, 84, false);
/// 32 hmask + 64 + 12 scales + d
pub const Q3_K: TensorType = t("Q3_K", "q3_k", Some(11), None, 256, 110, false);
/// d, dmin + 12 scales + 128
pub const Q4_K: TensorType = t("Q4_K", "q4_k", Some(12), None, 256, 144, false);
/// d, dmin + 12 + 32 fifth bits + 128
pub const Q5_K: TensorType = t("Q5_K", "q5_k", Some(13), None, 256, 176, false);
/// 128 low + 64 high + 16 scales + d
pub const Q6_K: TensorType = t("Q6_K", "q6_k", Some(14), None, 256, 210, false);
/// f32 d + 256 + 16 block sums
pub const Q8_K: TensorType = t("Q8_K", "q8_k", Some(15), None, 256, 292, false);
// Importance and ternary quants: sized (their files open, their memory is estimated), not run.
pub const IQ2_XXS: TensorType = t("IQ2_XXS", "iq2_xxs", Some(16), None, 256, 66, false);
pub const IQ2_XS: TensorType = t("IQ2_XS", "iq2_xs", Some(17), None, 256, 74, false);
pub const IQ3_XXS: TensorType = t("IQ3_XXS", "iq3_xxs", Some(18), None, 256, 98, false);
pub const IQ1_S: TensorType = t("IQ1_S", "iq1_s", Some(19), None, 256, 50, false);
pub const IQ4_NL: TensorType = t("IQ4_NL", "iq4_nl", Some(20), None, 32, 18, false);
pub const IQ3_S: TensorType = t("IQ3_S", "iq3_s", Some(21), None, 256, 110, false);
pub const IQ2_S: TensorType = t("IQ2_S", "iq2_s", Some(22), None, 256, 82, false);
pub const IQ4_XS: TensorType = t("IQ4_XS", "iq4_xs", Some(23), None, 256, 136, false);
pub const IQ1_M: TensorType = t("IQ1_M", "iq1_m", Some(29), None, 256, 56, false);
pub const TQ1_0: TensorType = t("TQ1_0", "tq1_0", Some(34), None, 256, 54, false);
pub const TQ2_0: TensorType = t("TQ2_0", "tq2_0", Some(35), None, 256, 66, false);
pub const MXFP4: TensorType = t("MXFP4", "mxfp4", Some(39), None, 32, 17, false);

/// Every type candlewick knows, plain types first.
pub static TYPES: &[TensorType] = &[
    F32, F16, BF16, F64, F8_E4M3, F8_E5M2, I8, I16, I32, I64, U8, U16, U32, U64, BOOL, Q4_0, Q4_1,
    Q5_0, Q5_1, Q8_0, Q8_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K, IQ2_XXS, IQ2_XS, IQ3_XXS, IQ1_S,
    IQ4_NL, IQ3_S, IQ2_S, IQ4_XS, IQ1_M, TQ1_0, TQ2_0, MXFP4,
];

impl TensorType {
    /// The type of a GGUF type id.
    pub fn from_gguf(id: u32) -> Option<&'static TensorType> {
        TYPES.iter().find(|t| t.gguf_id == Some(id))
    }

    /// The type of a safetensors dtype string.
    pub fn from_safetensors(dtype: &str) -> Option<&'static TensorType> {
        TYPES.iter().find(|t| t.safetensors == Some(dtype))
    }

    /// By ggml name ("Q4_K").
    pub fn named(name: &str) -> Option<&'static TensorType> {
        TYPES.iter().find(|t| t.name == name)
    }

    /// Names as users write them: float32/fp32/f32, float16/fp16/f16/half, bfloat16/bf16, int8,
    /// and GGUF type names in either case (q4_k, Q4_K, q4_k_m, ...: a llama.cpp mix suffix
    /// _s/_m/_l is read as its main type).
    pub fn parse(name: &str) -> Result<&'static TensorType> {
        let n = name.trim().to_ascii_lowercase();
        let canon = match n.as_str() {
            "float32" | "fp32" | "f32" | "float" => "float32",
            "float16" | "fp16" | "f16" | "half" => "float16",
            "bfloat16" | "bf16" => "bfloat16",
            "float64" | "fp64" | "f64" | "double" => "float64",
            "int8" | "i8" | "qint8" => "int8",
            other => other
                .strip_suffix("_m")
                .or_else(|| other.strip_suffix("_s"))
                .or_else(|| other.strip_suffix("_l"))
                .filter(|base| TYPES.iter().any(|t| t.user_name == *base))
                .unwrap_or(other),
        };
        TYPES
            .iter()
            .find(|t| t.user_name == canon || t.name.eq_ignore_ascii_case(canon))
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "unknown dtype '{name}' (known: {})",
                    TYPES
                        .iter()
                        .map(|t| t.user_name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
    }

    /// Bytes for `n` values, in whole blocks.
    pub fn bytes(&self, n: u64) -> u64 {
        n.div_ceil(self.block_size as u64)
            .saturating_mul(self.block_bytes as u64)
    }

    pub fn bytes_per_value(&self) -> f64 {
        self.block_bytes as f64 / self.block_size as f64
    }

    /// candle's quantized dtype for this type, where candle can hold it.
    pub fn candle(&self) -> Option<GgmlDType> {
        Some(match self.name {
            "F32" => GgmlDType::F32,
            "F16" => GgmlDType::F16,
            "BF16" => GgmlDType::BF16,
            "Q4_0" => GgmlDType::Q4_0,
            "Q4_1" => GgmlDType::Q4_1,
            "Q5_0" => GgmlDType::Q5_0,
            "Q5_1" => GgmlDType::Q5_1,
            "Q8_0" => GgmlDType::Q8_0,
            "Q8_1" => GgmlDType::Q8_1,
            "Q2_K" => GgmlDType::Q2K,
            "Q3_K" => GgmlDType::Q3K,
            "Q4_K" => GgmlDType::Q4K,
            "Q5_K" => GgmlDType::Q5K,
            "Q6_K" => GgmlDType::Q6K,
            "Q8_K" => GgmlDType::Q8K,
            _ => return None,
        })
    }
}

impl std::fmt::Display for TensorType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_sizes_agree_with_candle() {
        for t in TYPES {
            if let Some(c) = t.candle() {
                assert_eq!(t.block_size, c.block_size(), "{}", t.name);
                assert_eq!(t.block_bytes, c.type_size(), "{}", t.name);
            }
        }
    }

    #[test]
    fn names_are_unique_and_parse() {
        for (i, a) in TYPES.iter().enumerate() {
            for b in &TYPES[i + 1..] {
                assert_ne!(a.name, b.name);
                assert_ne!(a.user_name, b.user_name);
                assert!(a.gguf_id.is_none() || a.gguf_id != b.gguf_id);
            }
            assert_eq!(TensorType::parse(a.user_name).unwrap(), a);
            assert_eq!(TensorType::parse(a.name).unwrap(), a);
        }
        assert_eq!(TensorType::parse("Q4_K_M").unwrap().name, "Q4_K");
        assert_eq!(TensorType::parse("bf16").unwrap().name, "BF16");
        assert!(TensorType::parse("fp7").is_err());
    }
}
