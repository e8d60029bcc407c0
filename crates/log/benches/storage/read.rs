//! Scenario c: sequential reads from the page cache.

use super::*;

#[derive(Debug)]
pub(super) struct ReadFigure {
    pub(super) name: &'static str,
    pub(super) best_gbps: f64,
    pub(super) median_gbps: f64,
    pub(super) best_secs: f64,
    pub(super) passes: usize,
    pub(super) reads: u64,
    pub(super) records: u64,
}

/// How one read pass moves data out of a slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadMode {
    /// `LogSlice::to_bytes` (fresh zeroed buffer + pread), then split batches.
    ToBytes,
    /// pread into one reused buffer, then parse batch headers.
    PreadReuse,
    /// Kernel-side transfer of the slice to /dev/null (sendfile/splice via
    /// `std::io::copy`), walking batch headers with 61-byte preads.
    ZeroCopy,
}

/// Scenario c: write `n` batches, read them all once to warm the page cache,
/// then time full sequential passes in each mode.
pub(super) fn read_bench(s: &Settings, pool: &[BytesMut], n: usize) -> io::Result<Vec<ReadFigure>> {
    let dir = s.dir.join("fjord-read");
    let log = open_log(&dir, Durability::Interval(Duration::from_secs(1)), LogConfig::default().segment_bytes)?;
    let mut scratch = new_histogram();
    append_interval(&log, pool, n, &mut scratch)?;
    let end = log.log_end_offset();
    // Warm-up: everything is read once through the API.
    let (warm_bytes, _, _) = read_pass(&log, end, ReadMode::ToBytes, &mut Vec::new())?;
    let expected = pool.iter().map(|b| b.len() as u64).sum::<u64>() / pool.len() as u64 * n as u64;
    if warm_bytes != expected {
        return Err(io::Error::other(format!("read back {warm_bytes} bytes, wrote {expected}")));
    }
    // Enough passes for ~2 s per mode at 4 GB/s, between 2 and 8.
    let passes = ((8e9 / expected as f64).ceil() as usize).clamp(2, 8);
    let mut buf = Vec::new();
    let mut out = Vec::new();
    for (mode, name) in [
        (ReadMode::ToBytes, "Log::read + to_bytes"),
        (ReadMode::PreadReuse, "Log::read + pread, reused buffer"),
        (ReadMode::ZeroCopy, "Log::read + sendfile (zero-copy)"),
    ] {
        let mut gbps = Vec::new();
        let mut best_secs = f64::MAX;
        let (mut reads, mut records) = (0, 0);
        for _ in 0..passes {
            let start = Instant::now();
            let (bytes, r, recs) = read_pass(&log, end, mode, &mut buf)?;
            let secs = start.elapsed().as_secs_f64();
            if bytes != expected {
                return Err(io::Error::other(format!("{name}: read {bytes} bytes, expected {expected}")));
            }
            gbps.push(bytes as f64 / secs / 1e9);
            if secs < best_secs {
                best_secs = secs;
            }
            (reads, records) = (r, recs);
        }
        out.push(ReadFigure {
            name,
            best_gbps: gbps.iter().copied().fold(0.0, f64::max),
            median_gbps: median(gbps),
            best_secs,
            passes,
            reads,
            records,
        });
    }
    drop(log);
    fs::remove_dir_all(&dir)?;
    Ok(out)
}

/// One sequential pass over offsets `0..end`. Returns (bytes of complete
/// batches consumed, reads issued, records consumed). A read of `max_bytes`
/// usually ends inside a batch; that partial batch is read again by the next
/// read (as a Kafka consumer would), and only complete batches count.
fn read_pass(log: &Log, end: u64, mode: ReadMode, buf: &mut Vec<u8>) -> io::Result<(u64, u64, u64)> {
    let mut offset = 0;
    let (mut bytes, mut reads, mut records) = (0u64, 0u64, 0u64);
    let mut null = if mode == ReadMode::ZeroCopy { Some(fs::File::create("/dev/null")?) } else { None };
    while offset < end {
        let r = log.read(offset, READ_MAX_BYTES, ReadBound::LogEnd).map_err(io::Error::other)?;
        let slice = r.slice.ok_or_else(|| io::Error::other(format!("no data at offset {offset}")))?;
        reads += 1;
        let (used, next, recs) = match mode {
            ReadMode::ToBytes => {
                let data = slice.to_bytes().map_err(io::Error::other)?;
                let (mut used, mut next, mut recs) = (0u64, offset, 0u64);
                for b in BatchSplitter::new(data) {
                    let b = b.map_err(io::Error::other)?;
                    let h = BatchHeader::parse(&b).map_err(io::Error::other)?;
                    used += b.len() as u64;
                    next = h.next_offset();
                    recs += u64::from(h.record_count);
                }
                (used, next, recs)
            }
            ReadMode::PreadReuse => {
                buf.resize(slice.len(), 0);
                slice.file().read_exact_at(&mut buf[..slice.len()], slice.position())?;
                walk_headers(&buf[..slice.len()], offset)?
            }
            ReadMode::ZeroCopy => {
                let (used, next, recs) = walk_headers_in_file(&slice, offset)?;
                let mut file: &fs::File = slice.file();
                file.seek(SeekFrom::Start(slice.position()))?;
                let copied = io::copy(&mut io::Read::take(file, used), null.as_mut().unwrap())?;
                if copied != used {
                    return Err(io::Error::other("short zero-copy transfer"));
                }
                (used, next, recs)
            }
        };
        if next <= offset {
            return Err(io::Error::other(format!(
                "no complete batch in a {}-byte read at offset {offset}",
                slice.len()
            )));
        }
        bytes += used;
        records += recs;
        offset = next;
    }
    Ok((bytes, reads, records))
}

/// Complete batches at the start of `data`: (bytes, next offset, records).
fn walk_headers(data: &[u8], mut next: u64) -> io::Result<(u64, u64, u64)> {
    let (mut pos, mut recs) = (0usize, 0u64);
    while data.len() - pos >= HEADER_LEN {
        let h = BatchHeader::parse(&data[pos..]).map_err(io::Error::other)?;
        if h.total_len() > data.len() - pos {
            break;
        }
        pos += h.total_len();
        next = h.next_offset();
        recs += u64::from(h.record_count);
    }
    Ok((pos as u64, next, recs))
}

/// Like [`walk_headers`], reading only the batch headers from the slice's file.
fn walk_headers_in_file(slice: &LogSlice, mut next: u64) -> io::Result<(u64, u64, u64)> {
    let (mut pos, mut recs) = (0usize, 0u64);
    let mut head = [0u8; HEADER_LEN];
    while slice.len() - pos >= LOG_OVERHEAD.max(HEADER_LEN) {
        slice.file().read_exact_at(&mut head, slice.position() + pos as u64)?;
        let h = BatchHeader::parse(&head).map_err(io::Error::other)?;
        if h.total_len() > slice.len() - pos {
            break;
        }
        pos += h.total_len();
        next = h.next_offset();
        recs += u64::from(h.record_count);
    }
    Ok((pos as u64, next, recs))
}
