//! Record compression codecs of Kafka v2 batches: gzip, snappy (raw and the
//! xerial framing Java clients write), LZ4 frames and zstd.
//!
//! Decompression is bounded: a batch of a few kilobytes can claim gigabytes
//! once decompressed, so every codec stops at `max_out` bytes and reports
//! [`FormatError::DecompressedTooLarge`] instead of allocating more.

use std::io::{Read, Write};

use crate::batch::Compression;
use crate::error::FormatError;

/// Largest decompressed size accepted for one batch's records. Producers
/// cap batches at about a megabyte, so this leaves room for very high
/// compression ratios while bounding what one hostile batch can cost.
pub const MAX_DECOMPRESSED_BYTES: usize = 64 << 20;

const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_LEN: usize = 16;
/// Block size of the xerial framing we write (snappy-java's default).
const XERIAL_BLOCK: usize = 32 * 1024;

fn failed(codec: Compression, e: impl std::fmt::Display) -> FormatError {
    FormatError::Decompression { codec: format!("{codec:?}"), reason: e.to_string() }
}

/// Reads all of `r`, failing once more than `max_out` bytes come out. The
/// buffer grows geometrically but never beyond `max_out`, so a bomb costs at
/// most `max_out` bytes (`read_to_end` could double past it).
fn read_bounded(codec: Compression, mut r: impl Read, max_out: usize) -> Result<Vec<u8>, FormatError> {
    let mut out: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match r.read(&mut chunk) {
            Ok(0) => return Ok(out),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(failed(codec, e)),
        };
        if out.len() + n > max_out {
            return Err(FormatError::DecompressedTooLarge { max: max_out });
        }
        if out.capacity() - out.len() < n {
            let want = (out.capacity() * 2).max(chunk.len()).max(out.len() + n).min(max_out);
            out.reserve_exact(want - out.len());
        }
        out.extend_from_slice(&chunk[..n]);
    }
}

fn snappy_block(data: &[u8], out: &mut Vec<u8>, max_out: usize) -> Result<(), FormatError> {
    let len = snap::raw::decompress_len(data).map_err(|e| failed(Compression::Snappy, e))?;
    if out.len() + len > max_out {
        return Err(FormatError::DecompressedTooLarge { max: max_out });
    }
    let start = out.len();
    out.resize(start + len, 0);
    let n =
        snap::raw::Decoder::new().decompress(data, &mut out[start..]).map_err(|e| failed(Compression::Snappy, e))?;
    out.truncate(start + n);
    Ok(())
}

fn snappy_decompress(data: &[u8], max_out: usize) -> Result<Vec<u8>, FormatError> {
    let mut out = Vec::new();
    if !data.starts_with(XERIAL_MAGIC) {
        snappy_block(data, &mut out, max_out)?;
        return Ok(out);
    }
    let mut rest = data.get(XERIAL_HEADER_LEN..).ok_or(FormatError::Truncated("xerial snappy header"))?;
    while !rest.is_empty() {
        let len_bytes: [u8; 4] = rest
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .ok_or(FormatError::Truncated("xerial snappy block length"))?;
        let len = u32::from_be_bytes(len_bytes) as usize;
        let block = rest.get(4..4 + len).ok_or(FormatError::Truncated("xerial snappy block"))?;
        snappy_block(block, &mut out, max_out)?;
        rest = &rest[4 + len..];
    }
    Ok(out)
}

/// Decompresses a batch's records, producing at most `max_out` bytes.
pub fn decompress(codec: Compression, data: &[u8], max_out: usize) -> Result<Vec<u8>, FormatError> {
    match codec {
        Compression::None => {
            if data.len() > max_out {
                return Err(FormatError::DecompressedTooLarge { max: max_out });
            }
            Ok(data.to_vec())
        }
        Compression::Gzip => read_bounded(codec, flate2::read::MultiGzDecoder::new(data), max_out),
        Compression::Snappy => snappy_decompress(data, max_out),
        Compression::Lz4 => read_bounded(codec, lz4_flex::frame::FrameDecoder::new(data), max_out),
        Compression::Zstd => {
            let decoder = zstd::stream::read::Decoder::new(data).map_err(|e| failed(codec, e))?;
            read_bounded(codec, decoder, max_out)
        }
    }
}

/// Compresses records the way Kafka clients do (xerial framing for snappy,
/// independent-block LZ4 frames).
pub fn compress(codec: Compression, data: &[u8]) -> Result<Vec<u8>, FormatError> {
    compress_level(codec, data, None)
}

/// [`compress`] at a level (gzip 1-9, zstd -131072..=22; `None`: the
/// codec's default, as Kafka's; snappy and LZ4 have none).
pub fn compress_level(codec: Compression, data: &[u8], level: Option<i32>) -> Result<Vec<u8>, FormatError> {
    let io = |e: std::io::Error| failed(codec, e);
    match codec {
        Compression::None => Ok(data.to_vec()),
        Compression::Gzip => {
            let gz = level.map_or(flate2::Compression::default(), |l| flate2::Compression::new(l.clamp(1, 9) as u32));
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), gz);
            enc.write_all(data).map_err(io)?;
            enc.finish().map_err(io)
        }
        Compression::Snappy => {
            let mut out = Vec::with_capacity(XERIAL_HEADER_LEN + data.len() / 2);
            out.extend_from_slice(XERIAL_MAGIC);
            out.extend_from_slice(&1i32.to_be_bytes()); // version
            out.extend_from_slice(&1i32.to_be_bytes()); // minimum compatible version
            let mut enc = snap::raw::Encoder::new();
            for chunk in data.chunks(XERIAL_BLOCK) {
                let block = enc.compress_vec(chunk).map_err(|e| failed(codec, e))?;
                out.extend_from_slice(&(block.len() as u32).to_be_bytes());
                out.extend_from_slice(&block);
            }
            Ok(out)
        }
        Compression::Lz4 => {
            let mut enc = lz4_flex::frame::FrameEncoder::new(Vec::new());
            enc.write_all(data).map_err(io)?;
            enc.finish().map_err(|e| failed(codec, e))
        }
        Compression::Zstd => zstd::stream::encode_all(data, level.unwrap_or(3)).map_err(io),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ALL: [Compression; 5] =
        [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd];

    proptest! {
        #[test]
        fn every_codec_round_trips(data in proptest::collection::vec(any::<u8>(), 0..100_000), rep in 1usize..4) {
            let data: Vec<u8> = data.iter().copied().cycle().take(data.len() * rep).collect();
            for codec in ALL {
                let packed = compress(codec, &data).unwrap();
                prop_assert_eq!(&decompress(codec, &packed, data.len()).unwrap(), &data, "{:?}", codec);
            }
        }

        #[test]
        fn decompressors_never_panic_on_garbage(data in proptest::collection::vec(any::<u8>(), 0..2000)) {
            for codec in ALL {
                let _ = decompress(codec, &data, 1 << 20);
                let mut xerial = XERIAL_MAGIC.to_vec();
                xerial.extend_from_slice(&data);
                let _ = decompress(codec, &xerial, 1 << 20);
            }
        }
    }

    #[test]
    fn decompression_bombs_stop_at_the_limit() {
        let zeros = vec![0u8; 8 << 20];
        for codec in ALL {
            let packed = compress(codec, &zeros).unwrap();
            let err = decompress(codec, &packed, 1 << 20).unwrap_err();
            assert_eq!(err, FormatError::DecompressedTooLarge { max: 1 << 20 }, "{codec:?}");
        }
        // A raw snappy header claiming 4 GiB is refused before allocating.
        let claim = [0xff, 0xff, 0xff, 0xff, 0x0f];
        assert!(decompress(Compression::Snappy, &claim, 1 << 20).is_err());
    }

    #[test]
    fn a_bomb_never_allocates_past_the_limit() {
        let zeros = vec![0u8; 8 << 20];
        let packed = compress(Compression::Gzip, &zeros).unwrap();
        let limit = (1 << 20) + 12345;
        // Exactly at the limit is fine, one byte over is refused.
        let small = compress(Compression::Gzip, &zeros[..limit]).unwrap();
        let out = decompress(Compression::Gzip, &small, limit).unwrap();
        assert_eq!(out.len(), limit);
        assert!(out.capacity() <= limit, "capacity {} exceeds the limit", out.capacity());
        assert_eq!(
            decompress(Compression::Gzip, &packed, limit),
            Err(FormatError::DecompressedTooLarge { max: limit })
        );
    }

    #[test]
    fn raw_snappy_without_xerial_framing_is_accepted() {
        let data = b"hello hello hello hello".repeat(100);
        let raw = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        assert_eq!(decompress(Compression::Snappy, &raw, 1 << 20).unwrap(), data);
    }
}
