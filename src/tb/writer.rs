//! [`EventWriter`]: one `events.out.tfevents.*` file in a run's log folder.

use super::proto::Msg;
use super::record::frame;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

// Field numbers of tensorboard/compat/proto: event.proto, summary.proto, tensor.proto.
const EVENT_WALL_TIME: u32 = 1;
const EVENT_STEP: u32 = 2;
const EVENT_FILE_VERSION: u32 = 3;
const EVENT_SUMMARY: u32 = 5;
const SUMMARY_VALUE: u32 = 1;
const VALUE_TAG: u32 = 1;
const VALUE_SIMPLE: u32 = 2;
const VALUE_IMAGE: u32 = 4;
const VALUE_HISTO: u32 = 5;
const VALUE_TENSOR: u32 = 8;
const VALUE_METADATA: u32 = 9;
const METADATA_PLUGIN_DATA: u32 = 1;
const METADATA_DATA_CLASS: u32 = 4;
const PLUGIN_NAME: u32 = 1;
const PLUGIN_CONTENT: u32 = 2;
const TENSOR_DTYPE: u32 = 1;
const TENSOR_SHAPE: u32 = 2;
const TENSOR_STRING_VAL: u32 = 8;
const SHAPE_DIM: u32 = 2;
const DIM_SIZE: u32 = 1;
// Summary.Image: height, width, colorspace, encoded_image_string.
const IMAGE_HEIGHT: u32 = 1;
const IMAGE_WIDTH: u32 = 2;
const IMAGE_COLORSPACE: u32 = 3;
const IMAGE_ENCODED: u32 = 4;
const DT_FLOAT: i64 = 1;
const DT_STRING: i64 = 7;
const DATA_CLASS_TENSOR: i64 = 2;

/// How every event file's name begins (TensorBoard loads the files so named).
pub const EVENTS_PREFIX: &str = "events.out.tfevents.";

/// The event files directly in `dir` (TensorBoard's run of that folder).
pub fn event_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter(|e| e.file_name().to_string_lossy().starts_with(EVENTS_PREFIX))
        .map(|e| e.path())
        .collect();
    files.sort();
    files
}

/// Whether `dir` holds event files itself (not in a subfolder).
pub fn holds_events(dir: &Path) -> bool {
    !event_files(dir).is_empty()
}

/// Distinguishes files created in the same second by the same process.
static FILE_COUNTER: AtomicU64 = AtomicU64::new(0);

pub struct EventWriter {
    file: File,
    path: PathBuf,
}

/// An I/O error that names the operation and the file.
fn at(e: io::Error, op: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{op} {}: {e}", path.display()))
}

pub(crate) fn now_secs() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

impl EventWriter {
    /// Create a new event file in `dir` (created if needed). Files are never
    /// appended to: each writer starts its own, as TensorBoard expects.
    pub fn create(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| at(e, "creating", dir))?;
        let name = format!(
            "{EVENTS_PREFIX}{}.{}.{}.{}",
            now_secs() as u64,
            hostname(),
            std::process::id(),
            FILE_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let path = dir.join(name);
        let file = OpenOptions::new().create_new(true).write(true).open(&path).map_err(|e| at(e, "creating", &path))?;
        let mut w = Self { file, path };
        let first = Msg::new().double(EVENT_WALL_TIME, now_secs()).string(EVENT_FILE_VERSION, "brain.Event:2");
        w.write_event(&first)?;
        Ok(w)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write_event(&mut self, event: &Msg) -> io::Result<()> {
        // One write call per record: see the module's flush policy.
        self.file.write_all(&frame(&event.0)).map_err(|e| at(e, "writing", &self.path))
    }

    fn write_values(&mut self, step: i64, values: &[Msg]) -> io::Result<()> {
        let mut summary = Msg::new();
        for v in values {
            summary = summary.msg(SUMMARY_VALUE, v);
        }
        let event = Msg::new().double(EVENT_WALL_TIME, now_secs()).int(EVENT_STEP, step).msg(EVENT_SUMMARY, &summary);
        self.write_event(&event)
    }

    /// One scalar.
    pub fn scalar(&mut self, tag: &str, step: i64, value: f32) -> io::Result<()> {
        self.scalars(step, &[(tag, value)])
    }

    /// Several scalars at one step, in one record.
    pub fn scalars(&mut self, step: i64, values: &[(&str, f32)]) -> io::Result<()> {
        let msgs: Vec<Msg> =
            values.iter().map(|(t, v)| Msg::new().string(VALUE_TAG, t).float(VALUE_SIMPLE, *v)).collect();
        self.write_values(step, &msgs)
    }

    /// Text (rendered as Markdown by TensorBoard's Text dashboard).
    pub fn text(&mut self, tag: &str, step: i64, text: &str) -> io::Result<()> {
        let metadata = plugin_metadata("text", &[]);
        let tensor = Msg::new()
            .int(TENSOR_DTYPE, DT_STRING)
            .msg(TENSOR_SHAPE, &Msg::new())
            .bytes(TENSOR_STRING_VAL, text.as_bytes());
        let value = Msg::new().string(VALUE_TAG, tag).msg(VALUE_TENSOR, &tensor).msg(VALUE_METADATA, &metadata);
        self.write_values(step, &[value])
    }

    /// A PNG image (shown by TensorBoard's Images dashboard). Its size and
    /// colour space are read from the PNG's header; anything else is refused.
    pub fn image(&mut self, tag: &str, step: i64, png: &[u8]) -> io::Result<()> {
        let (width, height, channels) = png_header(png).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{tag}: not a PNG image (no PNG signature and IHDR header)"),
            )
        })?;
        let image = Msg::new()
            .int(IMAGE_HEIGHT, height)
            .int(IMAGE_WIDTH, width)
            .int(IMAGE_COLORSPACE, channels)
            .bytes(IMAGE_ENCODED, png);
        let value = Msg::new().string(VALUE_TAG, tag).msg(VALUE_IMAGE, &image);
        self.write_values(step, &[value])
    }

    /// A histogram of `values` in `buckets` equal-width buckets between their
    /// minimum and maximum. Non-finite values are skipped; empty input writes nothing.
    pub fn histogram(&mut self, tag: &str, step: i64, values: &[f64], buckets: usize) -> io::Result<()> {
        let Some(h) = Histogram::of(values, buckets) else { return Ok(()) };
        let histo = Msg::new()
            .double(1, h.min)
            .double(2, h.max)
            .double(3, h.num)
            .double(4, h.sum)
            .double(5, h.sum_squares)
            .packed_doubles(6, &h.limits)
            .packed_doubles(7, &h.counts);
        let value = Msg::new().string(VALUE_TAG, tag).msg(VALUE_HISTO, &histo);
        self.write_values(step, &[value])
    }

    /// A plugin record carried as metadata on an empty float tensor (how the
    /// HParams plugin stores its experiment and session records).
    pub(crate) fn plugin_record(&mut self, tag: &str, plugin: &str, content: &[u8]) -> io::Result<()> {
        let metadata = plugin_metadata(plugin, content);
        let shape = Msg::new().msg(SHAPE_DIM, &Msg::new().int(DIM_SIZE, 0));
        let tensor = Msg::new().int(TENSOR_DTYPE, DT_FLOAT).msg(TENSOR_SHAPE, &shape);
        let value = Msg::new().string(VALUE_TAG, tag).msg(VALUE_TENSOR, &tensor).msg(VALUE_METADATA, &metadata);
        self.write_values(0, &[value])
    }

    /// Make everything written so far durable (fsync).
    pub fn flush(&mut self) -> io::Result<()> {
        self.file.sync_data().map_err(|e| at(e, "syncing", &self.path))
    }
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        let _ = self.file.sync_data();
    }
}

/// Width, height and channel count (TensorBoard's colorspace: 1 grey, 2
/// grey and alpha, 3 RGB, 4 RGBA) from a PNG's signature and IHDR chunk.
fn png_header(png: &[u8]) -> Option<(i64, i64, i64)> {
    const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    if png.len() < 26 || &png[..8] != SIGNATURE || &png[12..16] != b"IHDR" {
        return None;
    }
    let be = |at: usize| i64::from(u32::from_be_bytes(png[at..at + 4].try_into().expect("4 bytes")));
    let channels = match png[25] {
        0 => 1,
        4 => 2,
        2 | 3 => 3, // a palette image decodes to RGB
        6 => 4,
        _ => return None,
    };
    Some((be(16), be(20), channels))
}

fn plugin_metadata(plugin: &str, content: &[u8]) -> Msg {
    let mut data = Msg::new().string(PLUGIN_NAME, plugin);
    if !content.is_empty() {
        data = data.bytes(PLUGIN_CONTENT, content);
    }
    Msg::new().msg(METADATA_PLUGIN_DATA, &data).int(METADATA_DATA_CLASS, DATA_CLASS_TENSOR)
}

/// Histogram statistics as TensorBoard's `HistogramProto` holds them:
/// `counts[i]` values fall in `(limits[i-1], limits[i]]` (the first bucket
/// includes the minimum).
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    pub min: f64,
    pub max: f64,
    pub num: f64,
    pub sum: f64,
    pub sum_squares: f64,
    pub limits: Vec<f64>,
    pub counts: Vec<f64>,
}

impl Histogram {
    pub fn of(values: &[f64], buckets: usize) -> Option<Self> {
        let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        if finite.is_empty() {
            return None;
        }
        let buckets = buckets.max(1);
        let min = finite.iter().copied().fold(f64::INFINITY, f64::min);
        let max = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let width = (max - min) / buckets as f64;
        let limits: Vec<f64> = if width > 0.0 {
            (1..=buckets).map(|i| if i == buckets { max } else { min + width * i as f64 }).collect()
        } else {
            vec![max]
        };
        let mut counts = vec![0.0; limits.len()];
        for v in &finite {
            // First limit >= v: the bucket whose right edge covers v.
            let i = limits.partition_point(|l| l < v).min(limits.len() - 1);
            counts[i] += 1.0;
        }
        Some(Self {
            min,
            max,
            num: finite.len() as f64,
            sum: finite.iter().sum(),
            sum_squares: finite.iter().map(|v| v * v).sum(),
            limits,
            counts,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_count_each_value_once_by_right_edge() {
        let h = Histogram::of(&[0.0, 1.0, 2.0, 3.0, 4.0, f64::NAN], 4).unwrap();
        assert_eq!(h.limits, vec![1.0, 2.0, 3.0, 4.0]);
        // 0 and 1 in (-inf, 1]; 2 in (1, 2]; 3 in (2, 3]; 4 in (3, 4].
        assert_eq!(h.counts, vec![2.0, 1.0, 1.0, 1.0]);
        assert_eq!((h.num, h.sum, h.sum_squares), (5.0, 10.0, 30.0));
        let same = Histogram::of(&[2.5, 2.5], 10).unwrap();
        assert_eq!((same.limits.clone(), same.counts.clone()), (vec![2.5], vec![2.0]));
        assert!(Histogram::of(&[f64::NAN], 3).is_none());
    }
}
