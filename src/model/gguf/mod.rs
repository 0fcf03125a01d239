//! GGUF files (llama.cpp's model format): metadata, tensor directory, and
//! tensor data dequantized to f32.
//!
//! Layout (version 2 and 3): magic `GGUF`, version u32, tensor count u64,
//! metadata count u64, metadata key/values, tensor infos (name, dims with the
//! fastest-varying first, type, offset), then the tensor data, aligned to
//! `general.alignment` (32 by default).

pub mod import;
pub mod quant;
pub mod tokenizer;

use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U64(u64),
    I64(i64),
    F64(f64),
    Bool(bool),
    Str(String),
    Array(Vec<Value>),
}

impl Value {
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U64(v) => Some(v),
            Value::I64(v) if v >= 0 => Some(v as u64),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F64(v) => Some(v),
            Value::U64(v) => Some(v as f64),
            Value::I64(v) => Some(v as f64),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct TensorInfo {
    pub name: String,
    /// GGUF order: `dims[0]` varies fastest (a linear layer's input features).
    pub dims: Vec<u64>,
    pub kind: quant::Kind,
    /// Absolute byte offset of the data in the file.
    pub offset: u64,
}

impl TensorInfo {
    pub fn elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// PyTorch order (slowest first), e.g. `[out_features, in_features]`.
    pub fn torch_shape(&self) -> Vec<i64> {
        self.dims.iter().rev().map(|&d| d as i64).collect()
    }
}

pub struct Gguf {
    pub path: PathBuf,
    pub version: u32,
    pub metadata: BTreeMap<String, Value>,
    pub tensors: Vec<TensorInfo>,
    map: memmap2::Mmap,
}

/// A bounds-checked little-endian cursor over the file.
struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        if self.pos.checked_add(n).is_none_or(|end| end > self.data.len()) {
            bail!(
                "{}: truncated GGUF: {what} needs {n} bytes at offset {} but the file has {}",
                self.path.display(),
                self.pos,
                self.data.len()
            );
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4, what)?.try_into().unwrap()))
    }
    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8, what)?.try_into().unwrap()))
    }
    fn string(&mut self, what: &str) -> Result<String> {
        let n = self.u64(what)?;
        if n > 1 << 30 {
            bail!("{}: corrupt GGUF: {what} claims a string of {n} bytes at offset {}", self.path.display(), self.pos);
        }
        let b = self.take(n as usize, what)?;
        String::from_utf8(b.to_vec()).with_context(|| format!("{}: {what} is not UTF-8", self.path.display()))
    }
    fn value(&mut self, ty: u32, what: &str) -> Result<Value> {
        Ok(match ty {
            0 => Value::U64(self.take(1, what)?[0] as u64),
            1 => Value::I64(self.take(1, what)?[0] as i8 as i64),
            2 => Value::U64(u16::from_le_bytes(self.take(2, what)?.try_into().unwrap()) as u64),
            3 => Value::I64(i16::from_le_bytes(self.take(2, what)?.try_into().unwrap()) as i64),
            4 => Value::U64(self.u32(what)? as u64),
            5 => Value::I64(self.u32(what)? as i32 as i64),
            6 => Value::F64(f32::from_le_bytes(self.take(4, what)?.try_into().unwrap()) as f64),
            7 => Value::Bool(self.take(1, what)?[0] != 0),
            8 => Value::Str(self.string(what)?),
            9 => {
                let inner = self.u32(what)?;
                let n = self.u64(what)?;
                if n > (self.data.len() - self.pos) as u64 {
                    bail!(
                        "{}: corrupt GGUF: {what} claims {n} array elements at offset {}",
                        self.path.display(),
                        self.pos
                    );
                }
                let mut v = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    v.push(self.value(inner, what)?);
                }
                Value::Array(v)
            }
            10 => Value::U64(self.u64(what)?),
            11 => Value::I64(self.u64(what)? as i64),
            12 => Value::F64(f64::from_le_bytes(self.take(8, what)?.try_into().unwrap())),
            other => bail!("{}: corrupt GGUF: unknown metadata type {other} for {what}", self.path.display()),
        })
    }
}

impl Gguf {
    pub fn open(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        // SAFETY: read-only mapping of a model file we do not modify.
        let map = unsafe { memmap2::Mmap::map(&file) }.with_context(|| format!("cannot map {}", path.display()))?;
        let mut c = Cursor { data: &map, pos: 0, path };
        if c.take(4, "magic")? != b"GGUF" {
            bail!("{}: not a GGUF file (no GGUF magic)", path.display());
        }
        let version = c.u32("version")?;
        if !(2..=3).contains(&version) {
            bail!("{}: GGUF version {version} is not supported (2 and 3 are)", path.display());
        }
        let n_tensors = c.u64("tensor count")?;
        let n_kv = c.u64("metadata count")?;
        if n_tensors > 1 << 20 || n_kv > 1 << 20 {
            bail!("{}: corrupt GGUF header ({n_tensors} tensors, {n_kv} metadata entries)", path.display());
        }
        let mut metadata = BTreeMap::new();
        for _ in 0..n_kv {
            let key = c.string("metadata key")?;
            let ty = c.u32(&key)?;
            let v = c.value(ty, &key)?;
            metadata.insert(key, v);
        }
        let mut tensors = Vec::new();
        for _ in 0..n_tensors {
            let name = c.string("tensor name")?;
            let nd = c.u32(&name)?;
            if nd == 0 || nd > 4 {
                bail!("{}: corrupt GGUF: tensor {name} has {nd} dimensions", path.display());
            }
            let dims = (0..nd).map(|_| c.u64(&name)).collect::<Result<Vec<_>>>()?;
            let ty = c.u32(&name)?;
            let kind = quant::Kind::from_ggml(ty).with_context(|| format!("{}: tensor {name}", path.display()))?;
            let offset = c.u64(&name)?;
            tensors.push(TensorInfo { name, dims, kind, offset });
        }
        let align = metadata.get("general.alignment").and_then(Value::as_u64).unwrap_or(32) as usize;
        let data_start = c.pos.div_ceil(align) * align;
        for t in &mut tensors {
            t.offset += data_start as u64;
            let bytes =
                t.kind.bytes_for(t.elements()).with_context(|| format!("{}: tensor {}", path.display(), t.name))?;
            if t.offset + bytes > map.len() as u64 {
                bail!(
                    "{}: truncated GGUF: tensor {} needs bytes {}..{} but the file has {}",
                    path.display(),
                    t.name,
                    t.offset,
                    t.offset + bytes,
                    map.len()
                );
            }
        }
        Ok(Self { path: path.to_path_buf(), version, metadata, tensors, map })
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    /// A required metadata value, with an error naming the key.
    pub fn require(&self, key: &str) -> Result<&Value> {
        self.metadata.get(key).with_context(|| format!("{}: metadata key {key} is missing", self.path.display()))
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The raw (possibly quantized) bytes of a tensor.
    pub fn raw(&self, t: &TensorInfo) -> &[u8] {
        let n = t.kind.bytes_for(t.elements()).expect("checked at open") as usize;
        &self.map[t.offset as usize..t.offset as usize + n]
    }

    /// A tensor's values as f32, in GGUF (= row-major PyTorch) order.
    pub fn dequantize(&self, t: &TensorInfo) -> Result<Vec<f32>> {
        quant::dequantize(t.kind, self.raw(t), t.elements() as usize)
    }
}
