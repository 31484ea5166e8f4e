//! The protobuf wire format of the remote write messages, written by hand: field keys, varints,
//! and the small messages (`Label`, `Sample`, `MetricMetadata`) as prost writes them (proto3:
//! empty strings, zero numbers left out).

use prost::encoding::encoded_len_varint;

use super::proto;

/// `WriteRequest.timeseries` (field 1) and `TimeSeries.labels` (field 1), length-delimited.
pub(super) const KEY_1_LEN: u8 = (1 << 3) | 2;
/// `Label.value`, `TimeSeries.samples` (field 2), `MetricMetadata.metric_family_name`.
pub(super) const KEY_2_LEN: u8 = (2 << 3) | 2;
/// `WriteRequest.metadata`, `TimeSeries.exemplars` (field 3).
pub(super) const KEY_3_LEN: u8 = (3 << 3) | 2;
/// `TimeSeries.histograms`, `MetricMetadata.help` (field 4).
pub(super) const KEY_4_LEN: u8 = (4 << 3) | 2;
/// `MetricMetadata.unit` (field 5).
pub(super) const KEY_5_LEN: u8 = (5 << 3) | 2;
/// `Sample.value` (field 1, 64-bit).
pub(super) const KEY_SAMPLE_VALUE: u8 = (1 << 3) | 1;
/// `Sample.timestamp` (field 2, varint); `MetricMetadata.type` is field 1, varint.
pub(super) const KEY_SAMPLE_TIMESTAMP: u8 = 2 << 3;
pub(super) const KEY_METADATA_TYPE: u8 = 1 << 3;

/// Appends `v` as a protobuf varint (prost's `encode_varint`, inlined: most are one byte).
#[inline]
pub(super) fn encode_varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// An empty vector of another lifetime on the same allocation (the values of one series are
/// borrowed for one call only).
pub(super) fn reuse<'a, 'b>(mut v: Vec<&'a str>) -> Vec<&'b str> {
    v.clear();
    v.into_iter()
        .map(|_| -> &'b str { unreachable!("the vector is empty") })
        .collect()
}

/// Length of a `Sample` message (proto3: a zero value or timestamp is left out).
pub(super) fn sample_len(value: f64, timestamp_ms: i64) -> usize {
    let v = if value == 0.0 { 0 } else { 9 };
    let t = if timestamp_ms == 0 {
        0
    } else {
        1 + encoded_len_varint(timestamp_ms as u64)
    };
    v + t
}

/// Writes one `TimeSeries.samples` field of length `len` ([`sample_len`]).
#[inline]
pub(super) fn write_sample(out: &mut Vec<u8>, value: f64, timestamp_ms: i64, len: usize) {
    out.push(KEY_2_LEN);
    encode_varint(len as u64, out);
    if value != 0.0 {
        out.push(KEY_SAMPLE_VALUE);
        out.extend_from_slice(&value.to_bits().to_le_bytes());
    }
    if timestamp_ms != 0 {
        out.push(KEY_SAMPLE_TIMESTAMP);
        encode_varint(timestamp_ms as u64, out);
    }
}

/// Writes one `TimeSeries.labels` field (a `Label`).
#[inline]
pub(super) fn write_label(out: &mut Vec<u8>, name: &str, value: &str) {
    let len = string_field_len(name) + string_field_len(value);
    out.push(KEY_1_LEN);
    encode_varint(len as u64, out);
    write_string_field(out, KEY_1_LEN, name);
    write_string_field(out, KEY_2_LEN, value);
}

pub(super) fn string_field_len(s: &str) -> usize {
    if s.is_empty() {
        0
    } else {
        1 + encoded_len_varint(s.len() as u64) + s.len()
    }
}

pub(super) fn write_string_field(out: &mut Vec<u8>, key: u8, s: &str) {
    if !s.is_empty() {
        out.push(key);
        encode_varint(s.len() as u64, out);
        out.extend_from_slice(s.as_bytes());
    }
}

/// Writes one `WriteRequest.metadata` field.
pub(super) fn write_metadata(out: &mut Vec<u8>, m: &proto::MetricMetadata) {
    let type_len = if m.r#type == 0 {
        0
    } else {
        1 + encoded_len_varint(m.r#type as u64)
    };
    let len =
        type_len + string_field_len(&m.metric_family_name) + string_field_len(&m.help) + string_field_len(&m.unit);
    out.push(KEY_3_LEN);
    encode_varint(len as u64, out);
    if m.r#type != 0 {
        out.push(KEY_METADATA_TYPE);
        encode_varint(m.r#type as u64, out);
    }
    write_string_field(out, KEY_2_LEN, &m.metric_family_name);
    write_string_field(out, KEY_4_LEN, &m.help);
    write_string_field(out, KEY_5_LEN, &m.unit);
}
