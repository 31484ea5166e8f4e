//! Label values of one series as one byte string.

/// Separator between values: `0xFF` never occurs in UTF-8.
const SEP: u8 = 0xFF;

/// Encodes the label values of a series, in the order of the family's label names, as one byte
/// string: the values joined by `0xFF`.
pub(crate) fn encode<S: AsRef<str>>(values: &[S], buf: &mut Vec<u8>) {
    buf.clear();
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            buf.push(SEP);
        }
        buf.extend_from_slice(v.as_ref().as_bytes());
    }
}

/// Splits encoded values; `n` is the number of label names (zero names: no values). `bytes` must
/// come from [`encode`]. The last value is the rest of `bytes`, not searched for a separator, so a
/// series of one label costs no scan of its value.
pub(crate) fn split(bytes: &[u8], n: usize) -> impl Iterator<Item = &str> {
    let mut rest = bytes;
    let mut left = n;
    std::iter::from_fn(move || {
        left = left.checked_sub(1)?;
        let value = if left == 0 {
            std::mem::take(&mut rest)
        } else {
            let end = rest.iter().position(|&b| b == SEP).unwrap_or(rest.len());
            let (value, after) = rest.split_at(end);
            rest = after.get(1..).unwrap_or_default();
            value
        };
        // SAFETY: `bytes` were joined from `&str`s at `SEP` (0xFF), a byte no UTF-8 string
        // contains, so each piece between separators (and the last, up to the end) is one of
        // those `&str`s, whole.
        Some(unsafe { std::str::from_utf8_unchecked(value) })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut buf = Vec::new();
        for vals in [vec![], vec![""], vec!["a", "", "ü\"\n"], vec!["", ""]] {
            encode(&vals, &mut buf);
            assert_eq!(split(&buf, vals.len()).collect::<Vec<_>>(), vals);
        }
    }
}
