//! Line-by-line reading of plain or gzip-compressed text files, with line
//! numbers for error messages and byte progress for progress bars.

use anyhow::{Context, Result};
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Counts bytes read from the file itself (compressed bytes for .gz), so
/// progress is measured against the file size.
struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

pub struct Lines {
    reader: Box<dyn BufRead + Send>,
    buf: Vec<u8>,
    pub path: PathBuf,
    /// 1-based number of the line last returned.
    pub line_no: u64,
    consumed: Arc<AtomicU64>,
}

/// Whether a file starts with the gzip magic bytes.
pub fn is_gzip(path: &Path) -> Result<bool> {
    let mut magic = [0u8; 2];
    let mut f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let n = f.read(&mut magic)?;
    Ok(n == 2 && magic == [0x1f, 0x8b])
}

impl Lines {
    pub fn open(path: &Path) -> Result<Self> {
        let gz = is_gzip(path)?;
        let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let consumed = Arc::new(AtomicU64::new(0));
        let counted = Counting { inner: file, count: consumed.clone() };
        let reader: Box<dyn BufRead + Send> = if gz {
            let decoder = flate2::read::MultiGzDecoder::new(BufReader::with_capacity(1 << 20, counted));
            Box::new(BufReader::with_capacity(1 << 20, decoder))
        } else {
            Box::new(BufReader::with_capacity(1 << 20, counted))
        };
        Ok(Self { reader, buf: Vec::with_capacity(4096), path: path.to_path_buf(), line_no: 0, consumed })
    }

    /// The next line without its line ending, or `None` at the end.
    pub fn next_line(&mut self) -> Result<Option<&[u8]>> {
        self.buf.clear();
        let n = self
            .reader
            .read_until(b'\n', &mut self.buf)
            .with_context(|| format!("{}: read error after line {}", self.path.display(), self.line_no))?;
        if n == 0 {
            return Ok(None);
        }
        self.line_no += 1;
        while matches!(self.buf.last(), Some(b'\n' | b'\r')) {
            self.buf.pop();
        }
        Ok(Some(&self.buf))
    }

    /// Bytes of the underlying file consumed so far.
    pub fn progress(&self) -> Arc<AtomicU64> {
        self.consumed.clone()
    }
}

/// UTF-8 if valid, else Latin-1 (ISO-8859-1: every byte is the code point of
/// the same value), which is how the older MovieLens files are encoded.
pub fn decode_text(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) => std::borrow::Cow::Borrowed(s),
        Err(_) => std::borrow::Cow::Owned(bytes.iter().map(|&b| b as char).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn reads_plain_and_gzip_with_line_numbers_and_crlf() {
        let d = tempfile::tempdir().unwrap();
        let plain = d.path().join("a.txt");
        std::fs::write(&plain, b"one\r\ntwo\nthree").unwrap();
        let gz = d.path().join("a.txt.gz");
        let mut enc = flate2::write::GzEncoder::new(File::create(&gz).unwrap(), flate2::Compression::fast());
        enc.write_all(b"one\r\ntwo\nthree").unwrap();
        enc.finish().unwrap();
        for p in [plain, gz] {
            let mut l = Lines::open(&p).unwrap();
            let mut got = Vec::new();
            while let Some(line) = l.next_line().unwrap() {
                got.push(String::from_utf8(line.to_vec()).unwrap());
            }
            assert_eq!(got, ["one", "two", "three"]);
            assert_eq!(l.line_no, 3);
        }
    }

    #[test]
    fn latin1_falls_back_per_line() {
        assert_eq!(decode_text(b"Caf\xe9"), "Café");
        assert_eq!(decode_text("Café".as_bytes()), "Café");
    }
}
