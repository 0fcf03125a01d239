//! The few protobuf wire-format writers TensorBoard's messages need. Fields are
//! written in field-number order, as protobuf serializers do.

/// A message being built.
#[derive(Default, Debug, Clone)]
pub struct Msg(pub Vec<u8>);

fn varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

impl Msg {
    pub fn new() -> Self {
        Self::default()
    }

    fn tag(&mut self, field: u32, wire: u8) {
        varint(&mut self.0, ((field as u64) << 3) | wire as u64);
    }

    /// int32/int64/enum/bool.
    pub fn int(mut self, field: u32, v: i64) -> Self {
        self.tag(field, 0);
        varint(&mut self.0, v as u64);
        self
    }

    pub fn double(mut self, field: u32, v: f64) -> Self {
        self.tag(field, 1);
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn float(mut self, field: u32, v: f32) -> Self {
        self.tag(field, 5);
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn bytes(mut self, field: u32, v: &[u8]) -> Self {
        self.tag(field, 2);
        varint(&mut self.0, v.len() as u64);
        self.0.extend_from_slice(v);
        self
    }

    pub fn string(self, field: u32, v: &str) -> Self {
        self.bytes(field, v.as_bytes())
    }

    pub fn msg(self, field: u32, m: &Msg) -> Self {
        self.bytes(field, &m.0)
    }

    /// A packed `repeated double`.
    pub fn packed_doubles(self, field: u32, vs: &[f64]) -> Self {
        let raw: Vec<u8> = vs.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.bytes(field, &raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_tags_match_the_protobuf_spec_examples() {
        // From the protobuf encoding guide: field 1 = 150 encodes as 08 96 01.
        assert_eq!(Msg::new().int(1, 150).0, vec![0x08, 0x96, 0x01]);
        // Field 2 = "testing" encodes as 12 07 74 65 73 74 69 6e 67.
        assert_eq!(Msg::new().string(2, "testing").0, b"\x12\x07testing".to_vec());
        // Negative int64 takes ten bytes (two's complement as unsigned).
        assert_eq!(Msg::new().int(1, -1).0.len(), 11);
    }
}
