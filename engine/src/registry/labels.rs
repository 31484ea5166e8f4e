//! Label values of one series in a single allocation.

/// Separator between values: `0xFF` never occurs in UTF-8.
const SEP: u8 = 0xFF;

/// The label values of a series, in the order of the family's label names, stored as one byte
/// string (values joined by `0xFF`). Ordering is by those bytes: stable, which is what the
/// exposition needs.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub(crate) struct LabelValues(Box<[u8]>);

impl LabelValues {
    pub(crate) fn encode<S: AsRef<str>>(values: &[S], buf: &mut Vec<u8>) {
        buf.clear();
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                buf.push(SEP);
            }
            buf.extend_from_slice(v.as_ref().as_bytes());
        }
    }

    pub(crate) fn from_encoded(bytes: &[u8]) -> Self {
        Self(bytes.into())
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The values; `n` is the number of label names (zero names: no values).
    #[cfg(test)]
    pub(crate) fn iter(&self, n: usize) -> impl Iterator<Item = &str> {
        split(&self.0, n)
    }
}

impl std::borrow::Borrow<[u8]> for LabelValues {
    fn borrow(&self) -> &[u8] {
        &self.0
    }
}

/// Splits encoded values. `bytes` must come from [`LabelValues::encode`].
pub(crate) fn split(bytes: &[u8], n: usize) -> impl Iterator<Item = &str> {
    bytes.split(|&b| b == SEP).take(n).map(|v| {
        // SAFETY: `bytes` were joined from `&str`s at `SEP` (0xFF), a byte no UTF-8 string
        // contains, so each piece between separators is one of those `&str`s, whole.
        unsafe { std::str::from_utf8_unchecked(v) }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut buf = Vec::new();
        for vals in [vec![], vec![""], vec!["a", "", "ü\"\n"], vec!["", ""]] {
            LabelValues::encode(&vals, &mut buf);
            let lv = LabelValues::from_encoded(&buf);
            assert_eq!(lv.iter(vals.len()).collect::<Vec<_>>(), vals);
        }
    }
}
