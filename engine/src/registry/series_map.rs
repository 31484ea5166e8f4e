//! A family's series, indexed by their label values, in little memory.
//!
//! Every series' encoded label values (see [`encode`](super::labels::encode)) sit back to back in
//! one byte arena, its cells' handle in a parallel vector, and a hash table of `u32` positions
//! finds a series by its values. Per series that is the label bytes, a 4-byte end offset, the
//! handle and about 5 bytes of table, instead of a tree node's share plus a separate allocation
//! for the values. Series are never removed; iteration is in creation order.

use std::hash::{BuildHasher, RandomState};

use hashbrown::HashTable;

use super::Series;

/// The series of one family.
pub(crate) struct SeriesMap {
    /// All encoded label values, back to back.
    bytes: Vec<u8>,
    /// Where series `i`'s values end in `bytes` (they start where series `i - 1`'s end).
    ends: Vec<u32>,
    series: Vec<Series>,
    /// Positions in `series`, hashed by the label bytes.
    index: HashTable<u32>,
    hasher: RandomState,
}

impl SeriesMap {
    pub(crate) fn new() -> Self {
        Self {
            bytes: Vec::new(),
            ends: Vec::new(),
            series: Vec::new(),
            index: HashTable::new(),
            hasher: RandomState::new(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.series.len()
    }

    fn values(&self, i: usize) -> &[u8] {
        series_values(&self.bytes, &self.ends, i)
    }

    /// The series with these encoded label values.
    pub(crate) fn get(&self, values: &[u8]) -> Option<&Series> {
        let hash = self.hasher.hash_one(values);
        self.index
            .find(hash, |&i| self.values(i as usize) == values)
            .map(|&i| &self.series[i as usize])
    }

    /// Adds a series that [`SeriesMap::get`] did not find. `false` (and nothing added) when the
    /// family's label bytes would pass 4 GiB, which the caller treats like the series limit.
    pub(crate) fn insert(&mut self, values: &[u8], series: Series) -> bool {
        debug_assert!(self.get(values).is_none(), "insert of an existing series");
        let (Ok(end), Ok(i)) = (
            u32::try_from(self.bytes.len() + values.len()),
            u32::try_from(self.series.len()),
        ) else {
            return false;
        };
        let hash = self.hasher.hash_one(values);
        self.bytes.extend_from_slice(values);
        self.ends.push(end);
        self.series.push(series);
        // The table rehashes what it holds as it grows; `self` is borrowed by it meanwhile.
        let (bytes, ends, hasher) = (&self.bytes, &self.ends, &self.hasher);
        self.index
            .insert_unique(hash, i, |&j| hasher.hash_one(series_values(bytes, ends, j as usize)));
        true
    }

    /// Every series with its encoded label values, in creation order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&[u8], &Series)> {
        self.series.iter().enumerate().map(|(i, s)| (self.values(i), s))
    }
}

/// Series `i`'s encoded label values: from where series `i - 1`'s end to where its own end.
fn series_values<'a>(bytes: &'a [u8], ends: &[u32], i: usize) -> &'a [u8] {
    let start = if i == 0 { 0 } else { ends[i - 1] as usize };
    &bytes[start..ends[i] as usize]
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::storage::gauge::GaugeCell;

    #[test]
    fn finds_what_it_holds_in_creation_order() {
        let mut m = SeriesMap::new();
        let keys: Vec<Vec<u8>> = (0..5000)
            .map(|i| format!("zone{}\u{ff}p{i}", i % 7).into_bytes())
            .collect();
        let cells: Vec<GaugeCell> = keys.iter().map(|_| GaugeCell::new()).collect();
        for (i, (k, c)) in keys.iter().zip(&cells).enumerate() {
            assert!(m.get(k).is_none());
            c.set(i as f64);
            assert!(m.insert(k, Series::Gauge(c.clone())));
        }
        assert!(
            m.insert(b"", Series::Gauge(GaugeCell::new())),
            "empty values are a series too"
        );
        assert_eq!(m.len(), 5001);
        for (i, k) in keys.iter().enumerate() {
            match m.get(k) {
                Some(Series::Gauge(g)) => assert_eq!(g.get(), i as f64),
                _ => panic!("series {i} lost"),
            }
        }
        assert!(m.get(b"zone0").is_none());
        let order: Vec<&[u8]> = m.iter().map(|(v, _)| v).collect();
        assert_eq!(order.len(), 5001);
        assert!(order.iter().zip(&keys).all(|(a, b)| *a == b.as_slice()));
        assert_eq!(order[5000], b"");
    }
}
